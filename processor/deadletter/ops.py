"""``weir dlq``: look at the dead letters and send them through the pipeline again.

Replay re-publishes each dead letter's original key, value and headers to its source
topic, with a ``weir-replay-of`` header naming where it came from, and marks the row
``replayed_at`` once Kafka has acknowledged it. A run interrupted between the two only
replays those rows again; the target's unique key absorbs a second copy of an event that
now passes. An event that fails again simply becomes a new dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from processor.connections import kafka_client
from processor.settings import Settings
from processor.sink.identifiers import qualified


@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters a command applies to."""

    topic: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_replayed: bool = False

    def where(self) -> tuple[str, list[Any]]:
        """A WHERE clause over the dead-letter table and its parameters."""
        clauses = ["consumer_group = $1"]
        args: list[Any] = []
        for column, op, value in (("topic", "=", self.topic), ("reason", "=", self.reason),
                                  ("failed_at", ">=", self.since),
                                  ("failed_at", "<", self.until)):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} {op} ${len(args) + 1}")
        if not self.include_replayed:
            clauses.append("replayed_at IS NULL")
        return " AND ".join(clauses), args


def _table(settings: Settings) -> str:
    return qualified(settings.postgres.schema_name, settings.postgres.dead_letter_table)


async def list_dead_letters(conn: asyncpg.Connection, settings: Settings, filters: Filters,
                            limit: int) -> list[asyncpg.Record]:
    """The newest dead letters matching ``filters``."""
    where, args = filters.where()
    return await conn.fetch(
        f'SELECT id, failed_at, topic, partition, "offset", reason, stage, error, replayed_at '
        f"FROM {_table(settings)} WHERE {where} ORDER BY id DESC LIMIT {int(limit)}",
        settings.kafka.group_id, *args,
    )


async def show_dead_letter(conn: asyncpg.Connection, settings: Settings,
                           dead_id: int) -> asyncpg.Record | None:
    """One dead letter, whole."""
    return await conn.fetchrow(f"SELECT * FROM {_table(settings)} WHERE id = $1", dead_id)


async def replay(conn: asyncpg.Connection, settings: Settings, filters: Filters,
                 dry_run: bool = False) -> int:
    """Publish the matching dead letters to their source topics again; return how many."""
    where, args = filters.where()
    rows = await conn.fetch(
        f'SELECT id, topic, partition, "offset", key, value, headers FROM {_table(settings)} '
        f"WHERE {where} ORDER BY topic, partition, \"offset\"",
        settings.kafka.group_id, *args,
    )
    if dry_run or not rows:
        return len(rows)
    producer = AIOKafkaProducer(**kafka_client(settings.kafka), acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send(row["topic"], row["value"], key=row["key"],
                                headers=_headers(row))
            for row in rows
        ]
        for future in sent:
            await future
    finally:
        await producer.stop()
    await conn.execute(f"UPDATE {_table(settings)} SET replayed_at = now() WHERE id = ANY($1)",
                       [row["id"] for row in rows])
    return len(rows)


def _headers(row: asyncpg.Record) -> list[tuple[str, bytes]]:
    original = row["headers"]
    pairs = orjson.loads(original) if isinstance(original, bytes | str) else original
    headers = [(str(k), str(v).encode()) for k, v in pairs or []
               if k != "weir-replay-of"]
    origin = f"{row['topic']}/{row['partition']}/{row['offset']}".encode()
    return [*headers, ("weir-replay-of", origin)]
