"""The offsets table: written in each batch's transaction, read on partition assignment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from processor.records import TopicPartitionKey
from processor.settings import Settings
from processor.sink.identifiers import qualified


class OffsetStore:
    """SQL for Weir's offsets table, bound to one consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.group = settings.kafka.group_id
        table = qualified(settings.postgres.schema_name, settings.postgres.offsets_table)
        # ORDER BY: row locks are taken in one order by every lane, so lanes never deadlock.
        self._upsert = (
            f"INSERT INTO {table} AS o (consumer_group, topic, partition, writer, next_offset) "
            "SELECT $1, t, p, $2, n FROM unnest($3::text[], $4::int[], $5::bigint[]) AS u(t, p, n) "
            "ORDER BY t, p "
            "ON CONFLICT (consumer_group, topic, partition, writer) DO UPDATE "
            "SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()"
        )
        self._load = (
            f"SELECT topic, partition, max(next_offset) AS next_offset FROM {table} "
            "WHERE consumer_group = $1 AND topic = ANY($2::text[]) GROUP BY topic, partition"
        )

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
