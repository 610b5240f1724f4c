"""A writer lane: takes batches from its buffer and commits them, one at a time, in order.

One lane per key range keeps each key's events in offset order; several lanes write in
parallel. What a failure means is the verdict's (:mod:`processor.core.verdict`): a transient one
is retried (the batch stays whole); one about the data is isolated by bisection, so good
rows are written and only the offending events are dead-lettered, in offset order; one that
refuses all work (a revoked privilege, a missing table) stalls the lane, which keeps the
batch, pauses its partitions and retries until an operator fixes it. A block of events
decoded together is turned back into its rows (the row path over its records) before a
batch is bisected, so the offending event is found as in any batch.

Dead letters are placed before the batch transaction, through the fallback chain of
:mod:`processor.deadletter.places`: the topic first, the table inside the transaction, the
spool if that transaction fails. A placed dead letter is never placed again by a retry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import structlog

from processor.batch.buffer import LaneBuffer
from processor.core import metrics
from processor.core.errors import describe
from processor.core.progress import ProgressBook
from processor.core.records import Block, Chunk, DeadLetter, Item, Row
from processor.core.retry import retry_transient
from processor.core.row_layout import offset_of, partition_of, topic_of
from processor.core.settings import Settings
from processor.core.stalls import Stalls, lane_part
from processor.core.verdict import Verdict, verdict
from processor.deadletter.places import Places, mark, unplaced
from processor.sink.breaker import CircuitBreaker
from processor.sink.writer import BatchWriter

log = structlog.get_logger(__name__)


def rejected(row: Row, exc: BaseException, attempts: int = 1) -> DeadLetter:
    """A row the table refused, as a dead letter carrying the database's reason.

    ``attempts`` counts the transactions that failed with the row in them.
    """
    return DeadLetter(
        topic=topic_of(row.values), partition=partition_of(row.values),
        offset=offset_of(row.values), timestamp_ms=row.timestamp_ms,
        key=row.key, value=row.value, headers=row.headers, stage="sink",
        reason="rejected_by_table", error=describe(exc),
        event_type=row.event_type, chunk=row.chunk, nbytes=row.nbytes, attempts=attempts,
    )


def expand(items: Sequence[Item]) -> list[Item]:
    """``items`` with every block replaced by its rows (and any dead letters), in order."""
    out: list[Item] = []
    for item in items:
        if type(item) is Block:
            out += item.expand()
        else:
            out.append(item)
    return out


class Lane:
    """One writer lane and its buffer."""

    def __init__(
        self, index: int, buffer: LaneBuffer, writer: BatchWriter, book: ProgressBook,
        settings: Settings, breaker: CircuitBreaker, places: Places, stalls: Stalls,
    ) -> None:
        self._breaker = breaker
        self._stalls = stalls
        self._part = lane_part(index)
        self._places = places
        self.index = index
        self.buffer = buffer
        self._writer = writer
        self._book = book
        self._max_rows = settings.batch.max_rows
        self._max_bytes = settings.batch.max_bytes
        self._linger_s = settings.batch.linger_ms / 1000
        self.busy = False

    async def run(self) -> None:
        """Write batches until the buffer is closed and drained."""
        while True:
            items = await self.buffer.take(self._max_rows, self._max_bytes, self._linger_s)
            if not items:
                return
            self.busy = True
            try:
                with metrics.FLUSH_SECONDS.time():
                    await self._commit(items)
            finally:
                self.busy = False

    async def _commit(self, items: Sequence[Item], depth: int = 1) -> None:
        done: Counter[Chunk] = Counter()
        for item in items:
            done[item.chunk] += item.rows
        await self._places.to_topic(unplaced(items))
        in_table = unplaced(items)
        try:
            await retry_transient(lambda: self._write(items, done), self._part,
                                  operation="batch_write", stalls=self._stalls)
        except Exception as exc:
            # Transient faults and stalls never get here (retried until they heal); a fatal
            # error stops the lane with nothing committed past what is stored.
            if verdict(exc) is not Verdict.ISOLATE:
                raise
            await self._isolate(items, exc, depth)
            return
        mark([d for d in in_table if d.place is None], "table")
        self._book.mark_done(done)
        metrics.observe_batch(items)

    async def _write(self, items: Sequence[Item], done: Counter[Chunk]) -> None:
        # Watermarks are computed at each attempt: other lanes may have committed meanwhile.
        try:
            await self._breaker.call(
                lambda: self._writer.write(self.index, items, self._book.watermarks_if(done))
            )
        except Exception as exc:
            if verdict(exc) in (Verdict.RETRY, Verdict.STALL):
                # PostgreSQL did not take them, and will be asked again: the spool is the
                # place that does not need it. The retried transaction then carries rows
                # and offsets only.
                await self._places.to_spool(unplaced(items), exc)
            raise

    async def _isolate(self, items: Sequence[Item], exc: BaseException, depth: int) -> None:
        if any(type(item) is Block for item in items):
            items = expand(items)
        if len(items) == 1:
            item = items[0]
            if isinstance(item, DeadLetter):
                await self._refused_dead_letter(item, exc)
                return
            assert isinstance(item, Row)  # blocks were expanded above
            log.warning("row rejected by table", topic=topic_of(item.values),
                        partition=partition_of(item.values), offset=offset_of(item.values),
                        error=describe(exc))
            await self._commit([rejected(item, exc, depth)])
            return
        middle = len(items) // 2
        await self._commit(items[:middle], depth + 1)
        await self._commit(items[middle:], depth + 1)

    async def _refused_dead_letter(self, dead: DeadLetter, exc: BaseException) -> None:
        # The dead-letter table itself refuses it: the spool is the last place. If the
        # spool fails too, stop with nothing committed past it.
        await self._places.to_spool([dead], exc)
        if dead.place is None:
            raise exc
        await self._commit([dead])  # its offset, now that it is safe
