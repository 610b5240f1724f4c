"""The decode stage: fetched records in, rows and dead letters out to the partition stage.

A fetch's records of a topic whose event type takes the columnar path
(:mod:`processor.decode.columnar`), every partition's at once when there are enough of them,
become one block of rows per partition, and only the records that path is not sure of go
through the decoder one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from processor.core import metrics
from processor.core.errors import EventRejected, describe
from processor.core.pgtime import PG_EPOCH_US
from processor.core.progress import PartitionProgress
from processor.core.records import (
    Block,
    Chunk,
    DeadLetter,
    Delete,
    Header,
    Item,
    Row,
    TopicPartitionKey,
    Truncate,
)
from processor.core.row_layout import RAW
from processor.core.stalls import Stalls
from processor.decode.columnar import MIN_RECORDS, ColumnarPlan, Decoded
from processor.decode.debezium import ColumnsPending
from processor.decode.decoder import Decoder
from processor.decode.framed import SchemaPending
from processor.decode.framed_columnar import decode_framed_batch
from processor.decode.held import HeldPartitions, Segment

log = structlog.get_logger(__name__)

# What a partition held for a mirror's new columns waits for, in place of a schema id: not
# the registry, but the pipeline's restart with the columns added (processor.runtime.mirrors).
NEW_COLUMNS = -1
NewColumns = Callable[[str, dict[str, Any]], None]


Fetch = list[tuple[PartitionProgress, list[Any]]]


class _Record(NamedTuple):
    """A record of a block again, for the row path (what aiokafka's records carry)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: list[Header]



class Output(Protocol):
    """Where decoded items go next (the partition stage's router)."""

    async def put(self, items: Sequence[Item]) -> None:
        """Take one fetch's items, in order; waits while a lane is full."""

    async def close(self) -> None:
        """No more items will come."""


class DecodeStage:
    """Decodes one fetch at a time and hands its items on, in order.

    A framed record whose schema the registry has not given yet holds its partition
    (:mod:`processor.decode.held`) until the registry answers; the rest flows on. So does a
    change with fields its evolving mirror has not: ``new_columns`` is told, and the
    partition waits for the restart that adds them.
    """

    def __init__(self, decoder: Decoder, output: Output, stalls: Stalls | None = None,
                 held: HeldPartitions | None = None, new_columns: NewColumns | None = None,
                 columnar: Mapping[str, ColumnarPlan] | None = None) -> None:
        """``columnar``: the plan of each topic whose events take the columnar path."""
        self._decoder = decoder
        self._columnar = columnar or {}
        self._output = output
        self._new_columns = new_columns
        self._stalls = stalls  # where a wait for the schema registry is reported
        self._held = held or HeldPartitions()
        self._wake = asyncio.Event()  # a partition was held

    async def run(self, fetches: asyncio.Queue[Fetch | None],
                  after_each: Callable[[], None] | None = None) -> None:
        """The stage's loop: every fetch of ``fetches`` until ``None``, then close the output.

        ``after_each`` runs after each fetch is handed on (backpressure pauses the partitions
        whose lanes it filled). Held partitions are retried by a task of the stage's own,
        which ends with it; what is still held then stays uncommitted in Kafka.
        """
        unholding = asyncio.create_task(self._unhold(), name="decode: held partitions")
        try:
            while (fetched := await self._next(fetches, unholding)) is not None:
                await self.dispatch(fetched)
                if after_each is not None:
                    after_each()
        finally:
            unholding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await unholding
        await self._output.close()

    @staticmethod
    async def _next(fetches: asyncio.Queue[Fetch | None], unholding: asyncio.Task[None]
                    ) -> Fetch | None:
        """The next fetch; the held partitions' task failing (a fatal verdict) ends the
        stage with its error instead."""
        if fetches.qsize():
            return fetches.get_nowait()
        getting = asyncio.ensure_future(fetches.get())
        try:
            await asyncio.wait({getting, unholding}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.cancel()
        if unholding.done():
            unholding.result()  # raises what ended it
        return getting.result()

    async def dispatch(self, fetched: Fetch) -> None:
        """Decode every record of one fetch and hand the items on (waits if a lane is full)."""
        items: list[Item] = []
        columnar: dict[str, list[Segment]] = {}
        for progress, records in fetched:
            if progress.revoked:
                continue  # the partition moved while this fetch waited; its next owner replays
            start = progress.written_until
            fresh = records
            if start is not None and records[0].offset < start:
                fresh = [r for r in records if r.offset >= start]
                if not fresh:
                    continue
            chunk = progress.open_chunk(fresh[0].offset, fresh[-1].offset + 1, len(fresh),
                                        fresh[0].timestamp)
            segment = Segment(progress, chunk, fresh)
            tp = chunk.tp
            if self._held.prune(tp):
                self._held.append(tp, segment)  # behind the records it already holds
                continue
            if tp[0] in self._columnar:
                columnar.setdefault(tp[0], []).append(segment)
                continue
            await self._rows(segment, items)
        await self._columnar_topics(columnar, items)
        if items:
            await self._output.put(items)

    async def _rows(self, segment: Segment, items: list[Item]) -> None:
        """``segment`` by the row path into ``items``; a record that waits for its schema
        (or a mirror's new columns) holds its partition from there on."""
        tp = segment.chunk.tp
        asked = None
        while (pending := self._decode(segment, items)) is not None:
            # The same id pending again right after it was fetched would spin here
            # without yielding: hold it, and let the held partitions' task ask again.
            if pending == NEW_COLUMNS:
                self._held.hold(tp, pending, segment)  # until the restart
                return
            if pending == asked or not await self._decoder.attempt_schema(
                    pending, self._stalls):
                self._held.hold(tp, pending, segment)
                self._wake.set()
                return
            asked = pending

    async def _columnar_topics(self, columnar: dict[str, list[Segment]], items: list[Item]
                               ) -> None:
        """Each columnar topic's segments of one fetch: together by the columnar path when
        there are enough records to pay for it, else by the row path."""
        for topic, segments in columnar.items():
            if sum(len(segment.records) for segment in segments) < MIN_RECORDS or not (
                    await self._columnar_decode(self._columnar[topic], segments, items)):
                for segment in segments:
                    await self._rows(segment, items)

    def _decode(self, segment: Segment, items: list[Item]) -> int | None:
        """Decode ``segment`` from its start into ``items`` by the row path: None when
        done, or the schema id of the first record that must wait for the registry
        (``segment.start`` is it)."""
        chunk = segment.chunk
        records = segment.records
        filtered = 0
        framed = self._decoder.is_framed(chunk.tp[0])
        decode = self._decoder.decode_framed if framed else self._decoder.decode
        pending = None
        first = segment.start
        for i, rec in enumerate(records[first:] if first else records, first):
            # The common case inline (a row); this loop runs once per event.
            value = rec.value
            try:
                if value is not None:
                    decoded = decode(rec.topic, rec.partition, rec.offset, rec.timestamp,
                                     value, rec.headers, rec.key)
                    nbytes = len(value)
                else:
                    decoded = self._decoder.tombstone(rec.topic, rec.partition, rec.offset,
                                                      rec.timestamp, rec.key)
                    nbytes = len(rec.key or b"")
            except (SchemaPending, ColumnsPending) as wait:
                segment.start, pending = i, self._wait_for(wait)
                break
            except EventRejected as exc:
                items.append(self._dead_letter(rec, chunk, exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one event must never stop Weir
                items.append(self._internal_error(rec, chunk, exc))
                continue
            if decoded is None:
                filtered += 1
                continue
            if framed and value is not None and (raw := decoded[1][RAW]) is not None:
                # The row holds the framed bytes and their JSON (raw): the lanes' byte
                # bounds must count both, or memory grows with a compact format. (A
                # mirror's delete or truncate keeps no raw.)
                nbytes += len(raw)
            extra = decoded[2] if len(decoded) == 3 else None  # child rows, a delete, …
            if extra is None or type(extra) is tuple:
                items.append(Row(decoded[0], decoded[1], chunk, nbytes, rec.key,
                                 list(rec.headers), rec.timestamp, value is None, value, extra))
            else:  # a mirror's delete or truncate
                items.append(Row(decoded[0], decoded[1], chunk, nbytes, rec.key,
                                 list(rec.headers), rec.timestamp, isinstance(extra, Delete),
                                 value, truncate=isinstance(extra, Truncate)))
        if filtered:
            metrics.EVENTS_FILTERED.labels(chunk.tp[0]).inc(filtered)
            segment.progress.mark_done(chunk, filtered)
        return pending

    async def _columnar_decode(self, plan: ColumnarPlan, segments: list[Segment],
                               items: list[Item]) -> bool:
        """A topic's segments of one fetch by the columnar path: into ``items``, for each
        partition its block, then the records the path left to the row path, in order.
        False (and nothing in ``items``) when the row path must take them all."""
        records = [r for segment in segments for r in segment.records]
        topic = segments[0].chunk.tp[0]
        framed = self._decoder.is_framed(topic)
        try:
            if framed:
                decoded = await self._framed_batch(plan, topic, records)
                if decoded is None:
                    return False  # the registry did not answer: the row path holds
                done = decoded
            else:
                mapped = plan.reads_records
                done = plan.decode([r.value for r in records], [r.offset for r in records],
                                   [r.timestamp for r in records], topic,
                                   [r.partition for r in records],
                                   keys=[r.key for r in records] if mapped else (),
                                   headers=[r.headers for r in records] if mapped else ())
        except Exception as exc:  # a bug of ours: the row path decides them all
            log.exception("the columnar path failed on a batch; it takes the row path",
                          topic=topic, error=describe(exc))
            return False
        if done.taken:
            metrics.COLUMNAR.labels(plan.event_type).inc(len(done.taken))
        for reason, count in done.reasons.items():
            if count:
                metrics.ROW_PATH.labels(plan.event_type, reason).inc(count)
        if done.dropped:
            metrics.EVENTS_FILTERED.labels(topic).inc(len(done.dropped))
        # Each list is in record order, and each segment's records are one run of indices.
        dropped = sorted(done.dropped)
        end = 0
        for segment in segments:
            start, end = end, end + len(segment.records)
            mine = done.taken[bisect_left(done.taken, start):bisect_left(done.taken, end)]
            left = done.fallback[bisect_left(done.fallback, start):
                                 bisect_left(done.fallback, end)]
            gone = bisect_left(dropped, end) - bisect_left(dropped, start)
            if gone:
                segment.progress.mark_done(segment.chunk, gone)
            if mine:
                assert done.columns is not None
                first = bisect_left(done.taken, start)  # the block's rows are in taken's order
                self._block(plan, segment, done.columns.slice(first, len(mine)),
                            [records[i] for i in mine], framed, items)
            if left:
                await self._rows(Segment(segment.progress, segment.chunk,
                                         [records[i] for i in left]), items)
        return True

    async def _framed_batch(self, plan: ColumnarPlan, topic: str, records: list[Any]
                            ) -> Decoded | None:
        """Framed records by the columnar path (:mod:`processor.decode.framed_columnar`),
        the schema ids not fetched yet asked for first. None if the registry did not
        answer: the row path then holds the partition and waits for it."""
        asked: set[int] = set()
        while True:
            try:
                return decode_framed_batch(plan, self._decoder, topic, records)
            except SchemaPending as wait:
                if wait.schema_id in asked or not await self._decoder.attempt_schema(
                        wait.schema_id, self._stalls):
                    return None
                asked.add(wait.schema_id)

    def _block(self, plan: ColumnarPlan, segment: Segment, columns: Any,
               taken: list[Any], is_framed: bool, items: list[Item]) -> None:
        """One partition's block: ``taken``'s rows, as ``columns`` holds them."""
        chunk, progress = segment.chunk, segment.progress
        micros = pc.min_max(columns.column("event_time").cast(pa.int64()))
        keys = [r.key for r in taken]
        headers = [list(r.headers) for r in taken]
        nbytes = sum(len(r.value) for r in taken)
        framed = None
        if is_framed:
            # A framed row holds its framed bytes and their JSON (raw), as the row path
            # counts; a bisection's row path reads the framed bytes again.
            nbytes += pc.sum(pc.binary_length(columns.column("raw"))).as_py() or 0
            framed = [r.value for r in taken]
        items.append(Block(
            plan.event_type, columns, chunk, len(taken), nbytes,
            [r.timestamp for r in taken],
            (micros["min"].as_py() - PG_EPOCH_US, micros["max"].as_py() - PG_EPOCH_US),
            lambda: self._expand(progress, chunk, columns, keys, headers, framed)))

    def _expand(self, progress: PartitionProgress, chunk: Chunk, columns: Any,
                keys: list[bytes | None], headers: list[list[Header]],
                framed: list[bytes] | None = None) -> list[Row | DeadLetter]:
        """A block's records through the row path, one item each (for a batch that must
        be bisected): its rows, or the dead letters the row path makes of them.
        ``framed``: the records' framed values, which the row path reads again (a plain
        JSON record's value is its raw)."""
        topic, partition = chunk.tp
        values = framed if framed is not None else [
            raw.encode() for raw in columns.column("raw").to_pylist()]
        records = [_Record(topic, partition, offset, timestamp // 1000, key, value, h)
                   for offset, timestamp, value, key, h in zip(
                       columns.column("kafka_offset").to_pylist(),
                       np.asarray(columns.column("kafka_timestamp").cast(pa.int64())).tolist(),
                       values, keys, headers, strict=True)]
        items: list[Item] = []
        self._decode(Segment(progress, chunk, records), items)  # counts what it drops
        out = [i for i in items if not isinstance(i, Block)]
        if len(out) != len(records):
            # The row path dropped what the columnar path kept: a disagreement, a bug of
            # ours; the row path's verdict stands.
            log.error("the row path dropped events the columnar path kept", topic=topic,
                      partition=partition, events=len(records) - len(out))
        return out

    def _wait_for(self, wait: SchemaPending | ColumnsPending) -> int:
        """What a record waits for: its schema's id, or (told to ``new_columns``) a mirror's
        new columns."""
        if isinstance(wait, SchemaPending):
            return wait.schema_id
        if self._new_columns is None:
            raise wait  # only a pipeline whose mirrors evolve raises it
        self._new_columns(wait.event_type, wait.fields)
        return NEW_COLUMNS

    async def _unhold(self) -> None:
        """Wait (stalled) for the registry to give each held partition's schema, then decode
        what it holds, in order, and let it be fetched again."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # however it goes below, never a loop that does not yield
            for tp, schema_id in self._held.waiting():
                if schema_id == NEW_COLUMNS:
                    continue  # waits for the restart, not for the registry
                await self._decoder.fetch_schema(schema_id, self._stalls)
                await self._drain(tp)
            if all(h.schema_id == NEW_COLUMNS for h in self._held.partitions.values()):
                self._wake.clear()

    async def _drain(self, tp: TopicPartitionKey) -> None:
        """Decode a held partition's records until it holds none, or a record waits again."""
        while self._held.prune(tp):
            holding = self._held.partitions[tp]
            if not holding.segments:
                self._held.release(tp)  # nothing arrived behind while the last went out
                return
            items: list[Item] = []
            segment = holding.segments[0]
            pending = self._decode(segment, items)
            if pending is None:
                holding.segments.pop(0)
            else:
                holding.schema_id = pending
            if items:
                await self._output.put(items)  # meanwhile, later records may be appended
            if pending is not None:
                return

    def _internal_error(self, rec: Any, chunk: Chunk, exc: Exception) -> DeadLetter:
        # A bug of ours met by one input (a decoder path no test reached): that event is a
        # dead letter saying so, the others go on.
        log.error("decoder failed on one event; it is dead-lettered",
                  topic=rec.topic, partition=rec.partition, offset=rec.offset,
                  error=describe(exc))
        return self._dead_letter(rec, chunk, EventRejected(
            "internal_error", "decode", describe(exc)))

    @staticmethod
    def _dead_letter(rec: Any, chunk: Chunk, exc: EventRejected) -> DeadLetter:
        return DeadLetter(
            topic=rec.topic, partition=rec.partition, offset=rec.offset,
            timestamp_ms=rec.timestamp, key=rec.key, value=rec.value,
            headers=list(rec.headers), stage=exc.stage, reason=exc.reason, error=str(exc),
            event_type=None, chunk=chunk,
            nbytes=len(rec.value) if rec.value is not None else 0,
        )
