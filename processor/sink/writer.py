"""Write one batch in one transaction: rows, dead letters and watermarks commit together.

The order inside the transaction is deliberate. Row locks are held until COMMIT, so what
other transactions wait for is taken last. Every table's rows (and child table's items)
are copied into its staging table first; the children of upsert tables are replaced (from
the events newer than the stored rows, so before those rows change), the tables without a
rollup are merged, tombstones deleted (and their children), dead letters and the lane's
own offsets rows written; the tables with a rollup are merged last, and after them the
children of insert tables (of the rows those inserts wrote, :mod:`processor.schema.children`;
a child's rollup too). A rollup's statement upserts its buckets, and every lane's batch adds
to the same current bucket, so each lane holds that row from its rollup upsert to its
commit while the others wait for it: merged last, that is one round trip and the commit,
not the rest of the batch.
(The offsets rows are the lane's own, ``writer`` in their key: no other lane waits for them.)
A mirror's truncate runs last, after the batch's own changes of its table: it removes what is
older than it, and every lane runs it in its own order (:mod:`processor.partition.router`).
A block of events decoded together (the columnar path) is copied into its table's
columnar stage by pgpq, and its table's insert reads both stages.
Either all of it is visible after COMMIT, or none of it: a crash at any point leaves the
stored watermark at or below what is written, and the next owner resumes from there.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from processor.core import metrics
from processor.core.errors import SinkUnavailable, TruncateHeld, describe, encoding_rows
from processor.core.offsets import OffsetStore
from processor.core.pgtime import kafka_micros
from processor.core.records import Block, DeadLetter, Item, Row, TopicPartitionKey
from processor.core.row_layout import (
    SOURCE_POSITION,
    event_time_of,
    offset_of,
    partition_of,
    position_of,
    topic_of,
)
from processor.core.settings import Settings
from processor.core.verdict import stale_connection
from processor.deadletter.table import DeadLetterTable
from processor.schema.children import ChildSpec
from processor.schema.tables import TableSpec
from processor.sink.columnar_copy import copy_blocks
from processor.sink.partitions import PartitionGuard
from processor.sink.tombstones import last_per_key


def _closed(conn: Any) -> bool:
    # A pool that was terminated (the shutdown deadline) detaches its connections, and
    # asking a detached one raises instead of answering: it is closed.
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


class BatchWriter:
    """Writes batches for every lane through a shared pool."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, specs: Mapping[str, TableSpec],
        offsets: OffsetStore, dead_letters: DeadLetterTable | None = None,
    ) -> None:
        self._pool = pool
        self._specs = specs
        self._offsets = offsets
        self._insert = {name: spec.insert_sql() for name, spec in specs.items()}
        # The columnar tables' inserts from the columnar stage alone, and from both.
        self._insert_of = {(name, rows): spec.insert_sql(rows=rows, blocks=True)
                           for name, spec in specs.items() if spec.columnar
                           for rows in (False, True)}
        self._delete = {name: spec.delete_sql() for name, spec in specs.items() if spec.upsert}
        self._mirrors = {name for name, spec in specs.items()
                         if spec.version == SOURCE_POSITION.name}
        self._truncates = {name: specs[name].truncate_sql() for name in self._mirrors
                           if settings.event_types[name].truncates == "truncate"}
        self._rolled_up = {name for name, spec in specs.items() if spec.rollups}
        self._children = {name: spec.children for name, spec in specs.items() if spec.children}
        self._child_sql = {c.name: _ChildSql.of(spec, c) for spec in specs.values()
                           for c in spec.children}
        self._partitions = PartitionGuard(specs)
        self.last_commit = 0.0  # time.monotonic() of the last committed batch
        self._dead_letters = dead_letters or DeadLetterTable(settings)

    async def write(
        self, writer: int, items: Sequence[Item], marks: Mapping[TopicPartitionKey, int]
    ) -> None:
        """Write ``items`` and the watermarks ``marks`` atomically."""
        rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        stones: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        truncates: dict[str, tuple[Any, ...]] = {}
        items_of: dict[str, Staged] = defaultdict(Staged)
        blocks: dict[str, list[Block]] = defaultdict(list)
        dead: list[DeadLetter] = []
        for item in items:
            if isinstance(item, Row) and item.truncate:
                truncates[item.event_type] = self._truncate(item, truncates)
            elif isinstance(item, Row):
                (stones if item.tombstone else rows)[item.event_type].append(item.values)
                if item.children is not None:
                    _stage_children(items_of, self._children[item.event_type], item)
            elif type(item) is Block:
                blocks[item.event_type].append(item)
            elif isinstance(item, DeadLetter) and item.place is None:
                dead.append(item)  # not yet kept in the topic or the spool
        deletes = {}
        for event_type, gone in stones.items():
            rows[event_type], deletes[event_type] = last_per_key(
                self._specs[event_type], rows.get(event_type, []), gone)
        # Before the transaction: making a partition must not hold the parent's lock until
        # this batch commits.
        await self._partitions.ensure(self._pool, rows, blocks)
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await self._statements(conn, rows, deletes, dead, writer, marks,
                                           items_of, blocks)
                    for event_type, values in truncates.items():
                        args = (position_of(values), partition_of(values),
                                offset_of(values), event_time_of(values))
                        await conn.execute(self._truncates[event_type], *args[
                            :4 if self._specs[event_type].soft_delete else 1])
            except Exception as exc:
                if stale_connection(exc):
                    # A failover: every pooled connection may point at the old primary, now
                    # a replica. The retry must get fresh ones, opened to the new primary.
                    await self._pool.expire_connections()
                if _closed(conn):
                    # A fact for the verdict, not a verdict: the connection died under this
                    # error, whatever the driver called it (a broken transport may read as
                    # an internal error of its own). SinkUnavailable is transient.
                    raise SinkUnavailable(
                        f"connection lost during the batch: {describe(exc)}") from exc
                raise
        self.last_commit = time.monotonic()
        self._mirror_lag(rows, stones, truncates)

    def _truncate(self, row: Row, seen: Mapping[str, tuple[Any, ...]]) -> tuple[Any, ...]:
        """A mirror's truncate, or the batch's latest one of its table (the latest empties
        what the earlier ones would); raises while its ``truncates`` is ``stall``."""
        if row.event_type not in self._truncates:
            raise TruncateHeld(
                f"table {self._specs[row.event_type].name}: its source table was truncated "
                f"(topic {topic_of(row.values)}, partition {partition_of(row.values)}, offset "
                f"{offset_of(row.values)}); with event_types.{row.event_type}.truncates: stall "
                "the mirror waits: set truncates to truncate (empty the mirror) or ignore, "
                "and restart")
        earlier = seen.get(row.event_type)
        return row.values if earlier is None or position_of(earlier) < position_of(
            row.values) else earlier

    def _mirror_lag(self, rows: Mapping[str, Sequence[tuple[Any, ...]]],
                    stones: Mapping[str, Sequence[tuple[Any, ...]]],
                    truncates: Mapping[str, tuple[Any, ...]]) -> None:
        """Each mirror's lag behind its source: now, less the commit time at the source of
        the latest change this batch wrote (a mirror's event time)."""
        now_us = kafka_micros(int(time.time() * 1000))
        for event_type in self._mirrors:
            times = [event_time_of(v) for v in (*rows.get(event_type, ()),
                                                *stones.get(event_type, ()))]
            if event_type in truncates:
                times.append(event_time_of(truncates[event_type]))
            if times:
                metrics.MIRROR_LAG.labels(event_type).set(max(0, now_us - max(times)) / 1e6)

    async def _statements(
        self, conn: Any, rows: Mapping[str, list[tuple[Any, ...]]],
        deletes: Mapping[str, Sequence[Any]], dead: Sequence[DeadLetter], writer: int,
        marks: Mapping[TopicPartitionKey, int], items_of: Mapping[str, Staged] | None = None,
        blocks: Mapping[str, Sequence[Block]] | None = None,
    ) -> None:
        """The batch transaction's statements, in the order the module's docstring gives."""
        items_of = items_of if items_of is not None else defaultdict(Staged)
        blocks = blocks or {}
        copied = [event_type for event_type, records in rows.items() if records]
        for event_type in copied:  # none when every event was superseded by a tombstone
            await self._copy(conn, self._specs[event_type], rows[event_type], items_of)
        for event_type, some in blocks.items():
            await copy_blocks(conn, self._specs[event_type], some)
        staged = [*copied, *(event_type for event_type in blocks if event_type not in copied)]
        insert = {event_type: self._insert_of[event_type, event_type in copied]
                  if event_type in blocks else self._insert[event_type]
                  for event_type in staged}
        for event_type in staged:
            for child in self._children.get(event_type, ()):
                await self._child_sql[child.name].replace(conn, items_of[child.name])
            if event_type not in self._rolled_up:
                await conn.execute(insert[event_type])
        for event_type, args in deletes.items():
            await conn.execute(self._delete[event_type], *args)
            for child in self._children.get(event_type, ()):
                await self._child_sql[child.name].orphans(conn, args)
        await self._dead_letters.insert(conn, dead)
        await self._offsets.save(conn, writer, marks)
        for event_type in staged:
            if event_type in self._rolled_up:
                await conn.execute(insert[event_type])
        for event_type in staged:
            for child in self._children.get(event_type, ()):
                await self._child_sql[child.name].insert(conn, items_of[child.name])

    @staticmethod
    async def _copy(conn: Any, spec: TableSpec, rows: list[tuple[Any, ...]],
                    items_of: Mapping[str, Staged]) -> None:
        """COPY an event type's rows, and its child tables' items, into their stages."""
        with encoding_rows():
            await conn.copy_records_to_table(spec.stage, records=rows, columns=spec.columns)
            for child in spec.children:
                if items_of[child.name].rows:
                    await conn.copy_records_to_table(
                        child.stage, records=items_of[child.name].rows,
                        columns=child.stage_columns)


@dataclass(slots=True)
class Staged:
    """One child table's items in a batch: their staged rows, and the records of the events
    that carry its array (with ``update_mode: merge`` an event that does not keeps the stored
    items)."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def _stage_children(items_of: Mapping[str, Staged], children: Sequence[ChildSpec],
                    row: Row) -> None:
    assert row.children is not None
    for child, found in zip(children, row.children, strict=True):
        if found is None:
            continue  # an absent array under merge: the stored items stay
        staged = items_of[child.name]
        staged.rows += found
        staged.topics.append(topic_of(row.values))
        staged.partitions.append(partition_of(row.values))
        staged.offsets.append(offset_of(row.values))


@dataclass(frozen=True, slots=True)
class _ChildSql:
    """One child table's statements, made once (:mod:`processor.schema.children`)."""

    upsert: bool
    merge: bool
    key_width: int
    insert_sql: str  # an insert table's children; for an upsert table, after delete_sql
    delete_sql: str = ""
    orphans_sql: str = ""

    @classmethod
    def of(cls, spec: TableSpec, child: ChildSpec) -> _ChildSql:
        if not spec.upsert:
            return cls(False, False, 0, child.insert_sql(spec))
        delete, insert = child.replace_sql(spec)
        return cls(True, spec.merge, len(spec.key), insert, delete, child.orphans_sql(spec))

    async def replace(self, conn: Any, staged: Staged) -> None:
        """An upsert table's: the items of its newer events replace the stored ones."""
        if not self.upsert:
            return
        args = (staged.topics, staged.partitions, staged.offsets) if self.merge else ()
        await conn.execute(self.delete_sql, *args)
        if staged.rows:
            await conn.execute(self.insert_sql, *args)

    async def insert(self, conn: Any, staged: Staged) -> None:
        """An insert table's: the items of the rows its insert wrote."""
        if not self.upsert and staged.rows:
            await conn.execute(self.insert_sql)

    async def orphans(self, conn: Any, delete_args: Sequence[Any]) -> None:
        """After the parent's tombstone deletes (``delete_args`` theirs): its children."""
        await conn.execute(self.orphans_sql, *delete_args[:self.key_width])
