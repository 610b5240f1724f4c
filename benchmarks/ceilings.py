"""What the machine allows: a bare consumer that discards, and COPY + upsert of pre-built rows.

Both use the same settings Weir runs with (fetch sizes, isolation level, batch size, lanes),
so the ratios compare Weir with the cost of its two unavoidable halves, not with a tuned
stand-in.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from benchmarks.env import BOOTSTRAP, DSN
from processor.contracts import load_contracts
from processor.core.connections import register_codecs
from processor.core.settings import Settings
from processor.decode.decoder import Decoder
from processor.schema.tables import TableSpec, table_spec
from processor.transform.loader import load_chains


async def consume(settings: Settings, topics: list[str], events: int,
                  keep: int) -> tuple[float, list[Any]]:
    """Read ``events`` records as fast as possible; return events/s and the first ``keep``."""
    k = settings.kafka
    # No group: aiokafka then assigns itself every partition of the topics, from the start.
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level=k.isolation_level,
        max_partition_fetch_bytes=k.max_partition_fetch_bytes, fetch_max_bytes=k.fetch_max_bytes,
    )
    await consumer.start()
    kept: list[Any] = []
    try:
        seen = 0
        started = time.perf_counter()
        while seen < events:
            batch = await consumer.getmany(timeout_ms=k.fetch_timeout_ms,
                                           max_records=k.fetch_max_records)
            for records in batch.values():
                seen += len(records)
                if len(kept) < keep:
                    kept.extend(records[: keep - len(kept)])
        return seen / (time.perf_counter() - started), kept
    finally:
        await consumer.stop()


def build_rows(settings: Settings, records: list[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Weir's own rows for ``records`` (decoded, validated, transformed), built up front."""
    decoder = Decoder(settings, load_contracts(settings), load_chains(settings))
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for r in records:
        decoded = decoder.decode(r.topic, r.partition, r.offset, r.timestamp, r.value)
        if decoded is not None:
            rows.setdefault(decoded[0], []).append(decoded[1])
    return rows


async def write(settings: Settings, rows: dict[str, list[tuple[Any, ...]]]) -> float:
    """Rows/s of COPY into staging + INSERT … ON CONFLICT, one transaction per batch.

    ``settings.pipeline.lanes`` connections write batches of ``settings.batch.max_rows``
    concurrently, as Weir's lanes do; the schema must be migrated and empty.
    """
    specs = {s.event_type: s for s in (table_spec(c, settings)
                                       for c in load_contracts(settings).values())}
    batches: asyncio.Queue[tuple[TableSpec, list[tuple[Any, ...]]]] = asyncio.Queue()
    size = settings.batch.max_rows
    for event_type, rs in rows.items():
        for i in range(0, len(rs), size):
            batches.put_nowait((specs[event_type], rs[i:i + size]))
    conns = [await _connect(specs.values()) for _ in range(settings.pipeline.lanes)]
    inserts = {s.event_type: s.insert_sql() for s in specs.values()}

    async def lane(conn: asyncpg.Connection) -> None:
        while not batches.empty():
            spec, batch = batches.get_nowait()
            async with conn.transaction():
                await conn.copy_records_to_table(spec.stage, records=batch, columns=spec.columns)
                await conn.execute(inserts[spec.event_type])

    try:
        started = time.perf_counter()
        await asyncio.gather(*(lane(c) for c in conns))
        return sum(map(len, rows.values())) / (time.perf_counter() - started)
    finally:
        for c in conns:
            await c.close()


async def _connect(specs: Any) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(DSN)
    await register_codecs(conn)
    for spec in specs:
        await conn.execute(spec.create_stage_sql())
    return conn
