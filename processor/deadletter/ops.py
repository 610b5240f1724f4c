"""``weir dlq``: look at the dead letters and send them through the pipeline again.

Replay re-publishes each dead letter's original key, value and headers to its source
topic, with a ``weir-replay-of`` header naming where it came from, and marks the row
``replayed_at`` once Kafka has acknowledged it. A run interrupted between the two only
replays those rows again; the target's unique key absorbs a second copy of an event that
now passes. An event that fails again simply becomes a new dead letter.

With ``dead_letters.topic_enabled``, the dead letters in the dead-letter topics count too:
``list`` shows those not in the table, ``show`` finds one by its source coordinates, and
``replay`` first copies them into the table (its unique source key keeps one row per
event), so that PostgreSQL records what was replayed and a second replay sends nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from processor.connections import kafka_client
from processor.deadletter.in_topic import Coords, TopicDeadLetter, read_topic_dead_letters
from processor.deadletter.spool import Entry, Spool
from processor.deadletter.stored import HEADERS_FORMAT, decode_headers, encode_headers, safe_text
from processor.records import Header
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

    def matches(self, dead: TopicDeadLetter) -> bool:
        """The same filters, for a dead letter read from a dead-letter topic."""
        return self._matches(dead.topic, dead.reason, dead.failed_at)

    def matches_spooled(self, entry: Entry) -> bool:
        """The same filters, for a spooled dead letter (one of unknown time: no time filter)."""
        at = entry.spooled_at
        if at is None and (self.since or self.until):
            return False
        return self._matches(entry.dead.topic, entry.dead.reason, at)

    def _matches(self, topic: str, reason: str, at: datetime | None) -> bool:
        return ((self.topic is None or topic == self.topic)
                and (self.reason is None or reason == self.reason)
                and (self.since is None or at is None or at >= _aware(self.since))
                and (self.until is None or at is None or at < _aware(self.until)))


def _aware(moment: datetime) -> datetime:
    # A time given without a zone means UTC, as PostgreSQL's timestamptz comparison does here.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
                           dead_id: int | Coords) -> dict[str, Any] | None:
    """One dead letter of the table, whole: by id, or by its event's source coordinates.

    Its headers are read back to the exact ``(key, bytes)`` pairs.
    """
    if isinstance(dead_id, int):
        row = await conn.fetchrow(f"SELECT * FROM {_table(settings)} WHERE id = $1", dead_id)
    else:
        row = await conn.fetchrow(
            f'SELECT * FROM {_table(settings)} WHERE consumer_group = $1 AND topic = $2 '
            f'AND partition = $3 AND "offset" = $4', settings.kafka.group_id, *dead_id)
    if row is None:
        return None
    return {"place": "table", **dict(row), "headers": decode_headers(row["headers"])}


async def _in_table(conn: asyncpg.Connection, settings: Settings,
                    coords: list[Coords]) -> set[Coords]:
    """Which of the events at ``coords`` the table holds a dead letter of."""
    if not coords:
        return set()
    rows = await conn.fetch(
        f"SELECT t.topic, t.partition, t.off FROM unnest($2::text[], $3::int[], $4::bigint[]) "
        f"AS t(topic, partition, off) WHERE EXISTS (SELECT 1 FROM {_table(settings)} d "
        f'WHERE d.consumer_group = $1 AND d.topic = t.topic AND d.partition = t.partition '
        f'AND d."offset" = t.off)',
        settings.kafka.group_id, [c[0] for c in coords], [c[1] for c in coords],
        [c[2] for c in coords],
    )
    return {(r["topic"], r["partition"], r["off"]) for r in rows}


async def only_in_topic(conn: asyncpg.Connection, settings: Settings,
                        filters: Filters) -> list[TopicDeadLetter]:
    """Matching dead letters of the dead-letter topics that the table does not hold."""
    if not settings.dead_letters.topic_enabled:
        return []
    found = [d for d in await read_topic_dead_letters(settings, filters.topic)
             if filters.matches(d)]
    in_table = await _in_table(conn, settings, [d.coords for d in found])
    return [d for d in found if d.coords not in in_table]


def spool_of(settings: Settings) -> Spool:
    """This machine's spool of the consumer group (``dead_letters.spool_dir``)."""
    return Spool(settings.dead_letters.spool_dir, settings.kafka.group_id)


def _coords(entry: Entry) -> Coords:
    return (entry.dead.topic, entry.dead.partition, entry.dead.offset)


async def in_spool(settings: Settings, filters: Filters) -> list[Entry]:
    """Matching dead letters of the spool, read-only (:meth:`Spool.peek`): a running Weir
    keeps appending and draining meanwhile."""
    return [e for e in await asyncio.to_thread(spool_of(settings).peek)
            if filters.matches_spooled(e)]


async def only_in_spool(conn: asyncpg.Connection, settings: Settings,
                        filters: Filters) -> list[Entry]:
    """Matching dead letters of the spool that are not in the table yet (one that a drain
    has just put in the table is shown once, as the table's)."""
    found = await in_spool(settings, filters)
    in_table = await _in_table(conn, settings, [_coords(e) for e in found])
    return [e for e in found if _coords(e) not in in_table]


def show_in_spool(settings: Settings, coords: Coords) -> dict[str, Any] | None:
    """The spooled dead letter of the event at ``coords``, whole, if the spool holds it."""
    spool = spool_of(settings)
    entry = next((e for e in spool.peek() if _coords(e) == coords), None)
    if entry is None:
        return None
    d = entry.dead
    return {"place": "spool", "path": str(spool.path), "spooled_at": entry.spooled_at,
            "topic": d.topic, "partition": d.partition, "offset": d.offset,
            "timestamp_ms": d.timestamp_ms, "key": d.key, "value": d.value,
            "headers": d.headers, "event_type": d.event_type, "stage": d.stage,
            "reason": d.reason, "error": d.error, "attempts": d.attempts}


async def show_in_topic(settings: Settings, coords: Coords) -> TopicDeadLetter | None:
    """The dead letter of the event at ``coords`` in the dead-letter topic, if there."""
    if not settings.dead_letters.topic_enabled:
        return None
    found = await read_topic_dead_letters(settings, coords[0])
    return next((d for d in found if d.coords == coords), None)


async def copy_into_table(conn: asyncpg.Connection, settings: Settings,
                          dead: list[TopicDeadLetter]) -> None:
    """Record topic dead letters in the table (one row per event; a second copy is a no-op)."""
    await conn.executemany(
        f'INSERT INTO {_table(settings)} (consumer_group, topic, partition, "offset", '
        "kafka_timestamp, key, value, headers, headers_format, event_type, stage, reason, "
        "error, failed_at) VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000), $6, $7, "
        "$8, $9, $10, $11, $12, $13, $14) ON CONFLICT ON CONSTRAINT "
        f'"{settings.postgres.dead_letter_table}_source_key" DO NOTHING',
        [(settings.kafka.group_id, safe_text(d.topic), d.partition, d.offset,
          d.kafka_timestamp_ms, d.key, d.value, orjson.dumps(encode_headers(d.headers)),
          HEADERS_FORMAT, safe_text(d.event_type), safe_text(d.stage), safe_text(d.reason),
          safe_text(d.error), d.failed_at) for d in dead],
    )


async def replay(conn: asyncpg.Connection, settings: Settings, filters: Filters,
                 dry_run: bool = False) -> int:
    """Publish the matching dead letters to their source topics again; return how many."""
    from_topic = await only_in_topic(conn, settings, filters)
    if dry_run:
        return await _count(conn, settings, filters) + len(from_topic)
    if from_topic:
        await copy_into_table(conn, settings, from_topic)
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


async def _count(conn: asyncpg.Connection, settings: Settings, filters: Filters) -> int:
    where, args = filters.where()
    count: int = await conn.fetchval(f"SELECT count(*) FROM {_table(settings)} WHERE {where}",
                                     settings.kafka.group_id, *args)
    return count


def _headers(row: asyncpg.Record) -> list[Header]:
    """The row's original headers, exact, and where the replayed record came from."""
    headers = [(k, v) for k, v in decode_headers(row["headers"]) if k != "weir-replay-of"]
    origin = f"{row['topic']}/{row['partition']}/{row['offset']}".encode()
    return [*headers, ("weir-replay-of", origin)]
