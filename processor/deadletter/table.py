"""The dead-letter table: its DDL, every write into it and every read of it.

A lane writes its batch's dead letters inside the batch transaction (:meth:`insert`); the
spool drain writes them in a transaction of their own (:meth:`write_alone`); ``weir dlq``
reads, copies topic dead letters in and marks replays. The unique source key makes a second
copy of one event's dead letter nothing, whichever path wrote the first.

Any dead letter must be insertable: the bytes go whole into ``bytea`` and exact-headers
``jsonb`` (:mod:`processor.deadletter.stored`), the messages into ``text`` without what
PostgreSQL's text refuses, and a Kafka timestamp no ``timestamptz`` reader can hold is
stored as no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from processor.core.identifiers import qualified, quote_ident
from processor.core.pgtime import kafka_micros_or_none
from processor.core.records import DeadLetter
from processor.core.settings import Settings
from processor.deadletter.in_topic import Coords, TopicDeadLetter
from processor.deadletter.stored import (
    HEADERS_FORMAT,
    LEGACY_HEADERS_FORMAT,
    encode_headers,
    safe_text,
)

if TYPE_CHECKING:
    from processor.commands.dlq_filters import Filters

Conn = asyncpg.Connection | PoolConnectionProxy

# Columns added after the table's first version: the writes and `weir dlq` name them, so
# `weir run` refuses a table without them until `weir migrate` adds them.
ADDED_COLUMNS = ("replayed_at", "headers_format")
HEADERS_COMMENT = (
    "'[key, value] pairs. headers_format 2: a string is the exact UTF-8 bytes, "
    "{\"base64\": ...} any other bytes, null no value. headers_format 1 (older rows): "
    "strings only, bytes that were not UTF-8 replaced by U+FFFD.'"
)
LISTED = 'id, failed_at, topic, partition, "offset", reason, stage, error, replayed_at'


class DeadLetterTable:
    """``dead_letters.table`` of one consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.group = settings.kafka.group_id
        self.name = settings.postgres.dead_letter_table
        self.qualified = qualified(settings.postgres.schema_name, self.name)
        # failed_at: now, unless the dead letter says when (a copy from the topic).
        self.insert_sql = (
            f"INSERT INTO {self.qualified} (consumer_group, topic, partition, \"offset\", "
            "kafka_timestamp, key, value, headers, headers_format, event_type, stage, reason, "
            "error, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
            "COALESCE($14::timestamptz, now())) ON CONFLICT ON CONSTRAINT "
            f"{quote_ident(self.name + '_source_key')} DO NOTHING"
        )

    def ddl(self) -> list[str]:
        """The table: original bytes plus why, where and when it failed; idempotent.

        Headers are exact (``processor/deadletter/stored.py``); ``headers_format`` tells rows
        of that form from older ones.
        """
        table, name = self.qualified, self.name
        return [
            f"""CREATE TABLE IF NOT EXISTS {table} (
  id bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  kafka_timestamp timestamptz,
  key bytea,
  value bytea,
  headers jsonb NOT NULL DEFAULT '[]',
  headers_format smallint NOT NULL DEFAULT {LEGACY_HEADERS_FORMAT},
  event_type text,
  stage text NOT NULL,
  reason text NOT NULL,
  error text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  replayed_at timestamptz,
  CONSTRAINT {quote_ident(name + '_source_key')} UNIQUE (consumer_group, topic, partition, "offset")
)""",
            # Tables made before `weir dlq replay` existed get the column on the next migrate.
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS replayed_at timestamptz",
            # Rows of a table made before exact headers keep what they hold and say so; so do
            # rows an older process still writes during an upgrade (it names no format).
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS headers_format smallint NOT NULL "
            f"DEFAULT {LEGACY_HEADERS_FORMAT}",
            f"COMMENT ON COLUMN {table}.headers IS {HEADERS_COMMENT}",
            f"CREATE INDEX IF NOT EXISTS {quote_ident(name + '_reason_idx')} "
            f"ON {table} (reason, failed_at)",
        ]

    # --- writes -----------------------------------------------------------------------------

    def args(self, d: DeadLetter | TopicDeadLetter) -> tuple[Any, ...]:
        """:attr:`insert_sql`'s arguments for one dead letter, from a lane or from a topic."""
        if isinstance(d, DeadLetter):
            timestamp_ms: int | None = d.timestamp_ms
            failed_at: datetime | None = None
        else:
            timestamp_ms, failed_at = d.kafka_timestamp_ms, d.failed_at
        return (
            self.group, safe_text(d.topic), d.partition, d.offset,
            kafka_micros_or_none(timestamp_ms), d.key, d.value,
            orjson.dumps(encode_headers(d.headers)), HEADERS_FORMAT, safe_text(d.event_type),
            safe_text(d.stage), safe_text(d.reason), safe_text(d.error), failed_at,
        )

    async def insert(self, conn: Conn, dead: Sequence[DeadLetter | TopicDeadLetter]) -> None:
        """Insert ``dead`` inside the caller's transaction."""
        if dead:
            await conn.executemany(self.insert_sql, [self.args(d) for d in dead])

    async def write_alone(self, pool: asyncpg.Pool, dead: Sequence[DeadLetter],
                          timeout_s: float) -> None:
        """``dead`` in a transaction of their own (draining the spool), bounded.

        Past ``timeout_s`` the connection is terminated rather than the operation cancelled:
        a cancelled query leaves a pooled connection busy (its ROLLBACK waits on a server
        that may never answer), while a terminated one fails at once and the pool replaces it.
        """
        async with pool.acquire(timeout=timeout_s) as conn:
            watchdog = asyncio.get_running_loop().call_later(timeout_s, conn.terminate)
            try:
                async with conn.transaction():
                    await self.insert(conn, dead)
            finally:
                watchdog.cancel()

    async def mark_replayed(self, conn: Conn, ids: Sequence[int]) -> None:
        """Record that the rows ``ids`` were published to their source topics again."""
        await conn.execute(f"UPDATE {self.qualified} SET replayed_at = now() "
                           "WHERE id = ANY($1)", list(ids))

    # --- reads ------------------------------------------------------------------------------

    def where(self, filters: Filters) -> tuple[str, list[Any]]:
        """A WHERE clause for ``filters`` and its arguments (``$1`` is the group)."""
        clauses = ["consumer_group = $1"]
        args: list[Any] = [self.group]
        for column, op, value in (("topic", "=", filters.topic),
                                  ("reason", "=", filters.reason),
                                  ("failed_at", ">=", filters.since),
                                  ("failed_at", "<", filters.until)):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} {op} ${len(args)}")
        if not filters.include_replayed:
            clauses.append("replayed_at IS NULL")
        return " AND ".join(clauses), args

    async def newest(self, conn: Conn, filters: Filters, limit: int) -> list[asyncpg.Record]:
        """The newest dead letters matching ``filters``, in brief."""
        where, args = self.where(filters)
        return list(await conn.fetch(
            f"SELECT {LISTED} FROM {self.qualified} WHERE {where} "
            f"ORDER BY id DESC LIMIT {int(limit)}", *args))

    async def count(self, conn: Conn, filters: Filters) -> int:
        """How many dead letters match ``filters``."""
        where, args = self.where(filters)
        found: int = await conn.fetchval(
            f"SELECT count(*) FROM {self.qualified} WHERE {where}", *args)
        return found

    async def to_replay(self, conn: Conn, filters: Filters) -> list[asyncpg.Record]:
        """The matching dead letters' originals, in source order."""
        where, args = self.where(filters)
        return list(await conn.fetch(
            f'SELECT id, topic, partition, "offset", key, value, headers FROM {self.qualified} '
            f'WHERE {where} ORDER BY topic, partition, "offset"', *args))

    async def one(self, conn: Conn, dead_id: int | Coords) -> asyncpg.Record | None:
        """One row, whole: by id, or by its event's source coordinates in this group."""
        if isinstance(dead_id, int):
            return await conn.fetchrow(f"SELECT * FROM {self.qualified} WHERE id = $1", dead_id)
        return await conn.fetchrow(
            f"SELECT * FROM {self.qualified} WHERE consumer_group = $1 AND topic = $2 "
            'AND partition = $3 AND "offset" = $4', self.group, *dead_id)

    async def holding(self, conn: Conn, coords: Sequence[Coords]) -> set[Coords]:
        """Which of the events at ``coords`` the table holds a dead letter of."""
        if not coords:
            return set()
        rows = await conn.fetch(
            "SELECT t.topic, t.partition, t.off FROM unnest($2::text[], $3::int[], "
            f"$4::bigint[]) AS t(topic, partition, off) WHERE EXISTS (SELECT 1 FROM "
            f"{self.qualified} d WHERE d.consumer_group = $1 AND d.topic = t.topic "
            'AND d.partition = t.partition AND d."offset" = t.off)',
            self.group, [c[0] for c in coords], [c[1] for c in coords], [c[2] for c in coords],
        )
        return {(r["topic"], r["partition"], r["off"]) for r in rows}
