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
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from processor.commands.dlq_filters import Filters
from processor.core.connections import kafka_client
from processor.core.records import Header
from processor.core.settings import Settings
from processor.deadletter.in_topic import Coords, TopicDeadLetter, read_topic_dead_letters
from processor.deadletter.spool import Entry, Spool
from processor.deadletter.stored import decode_headers
from processor.deadletter.table import DeadLetterTable


async def list_dead_letters(conn: asyncpg.Connection, settings: Settings, filters: Filters,
                            limit: int) -> list[asyncpg.Record]:
    """The newest dead letters matching ``filters``."""
    return await DeadLetterTable(settings).newest(conn, filters, limit)


async def show_dead_letter(conn: asyncpg.Connection, settings: Settings,
                           dead_id: int | Coords) -> dict[str, Any] | None:
    """One dead letter of the table, whole: by id, or by its event's source coordinates.

    Its headers are read back to the exact ``(key, bytes)`` pairs.
    """
    row = await DeadLetterTable(settings).one(conn, dead_id)
    if row is None:
        return None
    return {"place": "table", **dict(row), "headers": decode_headers(row["headers"])}


async def only_in_topic(conn: asyncpg.Connection, settings: Settings,
                        filters: Filters) -> list[TopicDeadLetter]:
    """Matching dead letters of the dead-letter topics that the table does not hold."""
    if not settings.dead_letters.topic_enabled:
        return []
    found = [d for d in await read_topic_dead_letters(settings, filters.topic)
             if filters.matches(d)]
    in_table = await DeadLetterTable(settings).holding(conn, [d.coords for d in found])
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
    in_table = await DeadLetterTable(settings).holding(conn, [_coords(e) for e in found])
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


async def replay(conn: asyncpg.Connection, settings: Settings, filters: Filters,
                 dry_run: bool = False) -> int:
    """Publish the matching dead letters to their source topics again; return how many."""
    table = DeadLetterTable(settings)
    from_topic = await only_in_topic(conn, settings, filters)
    if dry_run:
        return await table.count(conn, filters) + len(from_topic)
    await table.insert(conn, from_topic)  # so PostgreSQL records what is replayed
    rows = await table.to_replay(conn, filters)
    if not rows:
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
    await table.mark_replayed(conn, [row["id"] for row in rows])
    return len(rows)


def _headers(row: asyncpg.Record) -> list[Header]:
    """The row's original headers, exact, and where the replayed record came from."""
    headers = [(k, v) for k, v in decode_headers(row["headers"]) if k != "weir-replay-of"]
    origin = f"{row['topic']}/{row['partition']}/{row['offset']}".encode()
    return [*headers, ("weir-replay-of", origin)]
