"""The dead-letter fallback chain: the Kafka topic, else the PostgreSQL table, else the spool.

How a lane uses it, per batch (the order is the guarantee):

1. :meth:`Places.to_topic` publishes the batch's dead letters not yet placed, and marks
   those Kafka acknowledged ``place="topic"``.
2. The batch transaction writes rows, the dead letters still unplaced (into the table) and
   the offsets. When it commits, those dead letters are marked ``"table"``.
3. If that transaction fails on a transient error (PostgreSQL away),
   :meth:`Places.to_spool` spools the unplaced dead letters before the retry; the retried
   transaction then carries rows and offsets only.

A placed dead letter is never placed again by a retry or a bisection of its batch, and no
offset is committed past a dead letter that is not in one of the three places, because the
offsets commit in step 2, after steps 1 and 3. The spool is drained (:meth:`drain`) into
the topic or the table at start and every ``dead_letters.spool_drain_interval_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import structlog

from processor.core import metrics
from processor.core.errors import describe
from processor.core.records import DeadLetter, Item
from processor.core.tasks import pause
from processor.core.verdict import Verdict, verdict
from processor.deadletter.spool import Entry, Spool
from processor.deadletter.table import DeadLetterTable
from processor.deadletter.topic import DeadLetterTopic

log = structlog.get_logger(__name__)


def unplaced(items: Sequence[Item]) -> list[DeadLetter]:
    """The dead letters among ``items`` that are not safely anywhere yet."""
    return [i for i in items if isinstance(i, DeadLetter) and i.place is None]


def mark(dead: Sequence[DeadLetter], place: str) -> None:
    """Record that ``dead`` are kept in ``place``."""
    for d in dead:
        d.place = place
    if dead:
        metrics.DEAD_LETTERS_PLACED.labels(place).inc(len(dead))


class Places:
    """The three places, shared by every lane of the process."""

    def __init__(self, topic: DeadLetterTopic | None, table: DeadLetterTable,
                 pool: asyncpg.Pool, spool: Spool, table_timeout_s: float) -> None:
        self._topic = topic
        self._table = table
        self._pool = pool
        self.spool = spool
        self._table_timeout_s = table_timeout_s
        self._draining = asyncio.Lock()

    async def to_topic(self, dead: Sequence[DeadLetter]) -> None:
        """Publish ``dead`` to the topic if it is enabled and not known to be failing."""
        if self._topic is None or not dead:
            return
        if not self._topic.available:
            log.warning("dead letters fall back to the table: the dead-letter topic failed "
                        "recently", count=len(dead))
            return
        results = await self._publish(self._topic, dead)
        failed = results.count(False)
        if failed:
            log.warning("dead letters fall back to the table: the dead-letter topic did not "
                        "acknowledge them", count=failed, of=len(dead))

    async def to_spool(self, dead: Sequence[DeadLetter], cause: BaseException) -> None:
        """Spool ``dead`` because the transaction that would put them in the table failed.

        If even the spool fails they stay unplaced, and the retried transaction carries
        them to the table: nothing is committed past them either way.
        """
        if not dead:
            return
        try:
            await self.spool.append(dead)
        except OSError as exc:
            # Not a question for the verdict: the spool is the last place of the chain, and
            # a spool that fails costs nothing (the retried transaction carries them), so
            # even a fatal-looking error (a folder without permission) must not stop Weir.
            log.error("dead letters could not be spooled; they wait for the table",  # noqa: TRY400
                      count=len(dead), error=describe(exc),
                      path=str(self.spool.path))
            return
        mark(dead, "spool")
        metrics.SPOOL_ENTRIES.inc(len(dead))
        log.warning("dead letters fall back to the spool: PostgreSQL did not take them",
                    count=len(dead), error=describe(cause),
                    path=str(self.spool.path))

    async def drain(self) -> int:
        """Move spooled dead letters to the topic or the table; return how many moved."""
        async with self._draining, self.spool.drain() as (entries, keeper):
            metrics.SPOOL_ENTRIES.set(len(entries))
            if not entries:
                return 0
            left = await self._drain_to_topic(entries)
            left = await self._drain_to_table(left)
            keeper.keep(left)
            moved = len(entries) - len(left)
            metrics.SPOOL_ENTRIES.set(len(left))
            log.info("spool drained", moved=moved, left=len(left), path=str(self.spool.path))
            return moved

    async def _drain_to_topic(self, entries: list[Entry]) -> list[Entry]:
        if self._topic is None or not self._topic.available:
            return entries
        results = await self._publish(self._topic, [e.dead for e in entries])
        return [e for e, ok in zip(entries, results, strict=True) if not ok]

    @staticmethod
    async def _publish(topic: DeadLetterTopic, dead: Sequence[DeadLetter]) -> list[bool]:
        """Publish ``dead``, marking those Kafka acknowledged; per dead letter, whether it was."""
        results = await topic.publish(dead)
        mark([d for d, ok in zip(dead, results, strict=True) if ok], "topic")
        return results

    async def _drain_to_table(self, entries: list[Entry]) -> list[Entry]:
        if not entries:
            return entries
        error = await self._insert([e.dead for e in entries])
        if error is None:
            return []
        if verdict(error) is not Verdict.ISOLATE or len(entries) == 1:
            # PostgreSQL still away or refusing the table, or the one entry the table
            # refuses: kept for the next drain.
            return entries
        # One entry the table refuses (why it was spooled) must not hold back the others.
        return [e for e in entries if await self._insert([e.dead]) is not None]

    async def _insert(self, dead: list[DeadLetter]) -> BaseException | None:
        """Write ``dead`` to the table; the error if it did not take them."""
        try:
            await self._table.write_alone(self._pool, dead, self._table_timeout_s)
        except Exception as exc:  # noqa: BLE001 - every error keeps them in the spool
            log.warning("spool not drained into the table", count=len(dead),
                        verdict=verdict(exc).value, error=describe(exc))
            return exc
        mark(dead, "table")
        return None

    async def drain_once(self) -> None:
        """:meth:`drain`, logging instead of raising when the spool folder is unusable."""
        try:
            await self.drain()
        except OSError as exc:
            # Unreadable or unwritable for now: what it holds stays there, safe, and a
            # dead letter that cannot be spooled waits for the table instead.
            log.error("spool could not be drained",  # noqa: TRY400
                      error=describe(exc), path=str(self.spool.path))

    async def drain_forever(self, interval_s: float) -> None:
        """The owned background task: drain, sleep, repeat until cancelled."""
        while True:
            await self.drain_once()
            await pause(interval_s)
