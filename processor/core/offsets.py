"""The offsets table: made by ``weir migrate``, written in each batch's transaction, read on
partition assignment, by ``weir lag`` and by ``weir offsets``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from processor.core.identifiers import qualified
from processor.core.records import TopicPartitionKey
from processor.core.settings import Settings

# The writer id of the row a rewind leaves (the lanes use 0…, the checkpointer -1).
REWIND_WRITER = -2


class OffsetStore:
    """Weir's offsets table (its DDL, writes and reads), bound to one consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.group = settings.kafka.group_id
        self.table = table = qualified(settings.postgres.schema_name,
                                       settings.postgres.offsets_table)
        # ORDER BY: row locks are taken in one order by every lane, so lanes never deadlock.
        self._upsert = (
            f"INSERT INTO {table} AS o (consumer_group, topic, partition, writer, next_offset) "
            "SELECT $1, t, p, $2, n FROM unnest($3::text[], $4::int[], $5::bigint[]) AS u(t, p, n) "
            "ORDER BY t, p "
            "ON CONFLICT (consumer_group, topic, partition, writer) DO UPDATE "
            "SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()"
        )
        self._positions = (
            f"SELECT topic, partition, max(next_offset) AS next_offset, "
            f"max(updated_at) AS updated_at FROM {table} "
            "WHERE consumer_group = $1 AND topic = ANY($2::text[]) GROUP BY topic, partition"
        )
        # A rewind replaces every writer's row of a partition with one: the resume point is
        # the largest row, so a row left above the target would win.
        self._clear = (
            f"DELETE FROM {table} WHERE consumer_group = $1 AND (topic, partition) IN "
            "(SELECT * FROM unnest($2::text[], $3::int[]))"
        )
        self._load = (
            f"SELECT topic, partition, max(next_offset) AS next_offset FROM {table} "
            "WHERE consumer_group = $1 AND topic = ANY($2::text[]) GROUP BY topic, partition"
        )

    def ddl(self) -> list[str]:
        """The table: one row per group, partition and writer lane; idempotent.

        Each row holds a watermark that was true when its transaction committed (every
        offset below it is written), so the resume point of a partition is the largest of
        its rows. One row per lane keeps lanes from queueing behind each other's row locks.
        """
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  writer integer NOT NULL,
  next_offset bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, partition, writer)
)"""
        ]

    async def save(
        self,
        conn: asyncpg.Connection | PoolConnectionProxy,
        writer: int, marks: Mapping[TopicPartitionKey, int]
    ) -> None:
        """Record watermarks inside the caller's transaction."""
        if not marks:
            return
        tps = list(marks)
        await conn.execute(
            self._upsert, self.group, writer, [t for t, _ in tps], [p for _, p in tps],
            [marks[tp] for tp in tps],
        )

    async def load(
        self, conn: asyncpg.Connection | asyncpg.Pool, topics: Iterable[str]
    ) -> dict[TopicPartitionKey, int]:
        """The resume point of every partition of ``topics`` with a stored offset."""
        rows = await conn.fetch(self._load, self.group, sorted(set(topics)))
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def positions(
        self, conn: asyncpg.Connection, topics: Iterable[str]
    ) -> dict[TopicPartitionKey, tuple[int, Any]]:
        """Per partition: the resume point and when it was last stored."""
        rows = await conn.fetch(self._positions, self.group, sorted(set(topics)))
        return {(r["topic"], r["partition"]): (r["next_offset"], r["updated_at"]) for r in rows}

    async def reset(self, conn: asyncpg.Connection,
                    marks: Mapping[TopicPartitionKey, int]) -> None:
        """Set the resume points to ``marks`` exactly, lower or higher (a rewind), inside the
        caller's transaction."""
        tps = sorted(marks)
        await conn.execute(self._clear, self.group, [t for t, _ in tps], [p for _, p in tps])
        await self.save(conn, REWIND_WRITER, marks)
