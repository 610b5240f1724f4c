"""Write one batch in one transaction: rows, dead letters and watermarks commit together.

The order inside the transaction is deliberate. Row locks are held until COMMIT, so what
other transactions wait for is taken last. Every table's rows are copied into its staging
table first; the tables without a rollup are merged, tombstones deleted, dead letters and
the lane's own offsets rows written; the tables with a rollup are merged last. Their
statement upserts the rollup's buckets, and every lane's batch adds to the same current
bucket, so each lane holds that row from its rollup upsert to its commit while the others
wait for it: merged last, that is one round trip and the commit, not the rest of the batch.
(The offsets rows are the lane's own, ``writer`` in their key: no other lane waits for them.)
Either all of it is visible after COMMIT, or none of it: a crash at any point leaves the
stored watermark at or below what is written, and the next owner resumes from there.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from processor.core.errors import SinkUnavailable, describe, encoding_rows
from processor.core.offsets import OffsetStore
from processor.core.records import DeadLetter, Item, Row, TopicPartitionKey
from processor.core.settings import Settings
from processor.core.verdict import stale_connection
from processor.deadletter.table import DeadLetterTable
from processor.schema.tables import TableSpec
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
        self._delete = {name: spec.delete_sql() for name, spec in specs.items() if spec.upsert}
        self._rolled_up = {name for name, spec in specs.items() if spec.rollups}
        self._partitions = PartitionGuard(specs)
        self.last_commit = 0.0  # time.monotonic() of the last committed batch
        self._dead_letters = dead_letters or DeadLetterTable(settings)

    async def write(
        self, writer: int, items: Sequence[Item], marks: Mapping[TopicPartitionKey, int]
    ) -> None:
        """Write ``items`` and the watermarks ``marks`` atomically."""
        rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        stones: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        dead: list[DeadLetter] = []
        for item in items:
            if isinstance(item, Row):
                (stones if item.tombstone else rows)[item.event_type].append(item.values)
            elif item.place is None:  # not yet kept in the topic or the spool
                dead.append(item)
        deletes = {}
        for event_type, gone in stones.items():
            rows[event_type], deletes[event_type] = last_per_key(
                self._specs[event_type], rows.get(event_type, []), gone)
        # Before the transaction: making a partition must not hold the parent's lock until
        # this batch commits.
        await self._partitions.ensure(self._pool, rows)
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await self._statements(conn, rows, deletes, dead, writer, marks)
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

    async def _statements(
        self, conn: Any, rows: Mapping[str, list[tuple[Any, ...]]],
        deletes: Mapping[str, Sequence[Any]], dead: Sequence[DeadLetter], writer: int,
        marks: Mapping[TopicPartitionKey, int],
    ) -> None:
        """The batch transaction's statements, in the order the module's docstring gives."""
        staged = [event_type for event_type, records in rows.items() if records]
        for event_type in staged:  # none when every event was superseded by a tombstone
            spec = self._specs[event_type]
            with encoding_rows():
                await conn.copy_records_to_table(spec.stage, records=rows[event_type],
                                                 columns=spec.columns)
        for event_type in staged:
            if event_type not in self._rolled_up:
                await conn.execute(self._insert[event_type])
        for event_type, args in deletes.items():
            await conn.execute(self._delete[event_type], *args)
        await self._dead_letters.insert(conn, dead)
        await self._offsets.save(conn, writer, marks)
        for event_type in staged:
            if event_type in self._rolled_up:
                await conn.execute(self._insert[event_type])
