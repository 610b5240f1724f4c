"""What the machine allows: a bare consumer that discards, and COPY + upsert of pre-built rows.

Both use the same settings Weir runs with (fetch sizes, isolation level, batch size, lanes),
so the ratios compare Weir with the cost of its two unavoidable halves, not with a tuned
stand-in. Each is measured at the parallelism of the Weir row it bounds: ``weir run
--workers N`` reads with N consumers (processes) in one group and writes on N x lanes
connections, so the consume ceiling runs N consumer processes in a group
(:func:`consume_parallel`) and the write ceiling N x lanes connections.
"""

from __future__ import annotations

import asyncio
import multiprocessing
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


def consume_parallel(settings: Settings, topics: list[str], group: str,
                     processes: int) -> tuple[float, int]:
    """Events/s of ``processes`` bare consumers in one group reading ``topics`` to their
    ends, each in its own process (as ``weir run --workers N``): from the first record any
    of them read to the last, so the group's join is not counted; and the records read."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        spans = pool.starmap(_consume_share, [(settings.model_dump(mode="json"), topics,
                                               group, processes)] * processes)
    read = [s for s in spans if s[0]]
    if not read:
        return 0.0, 0
    first, last = min(s[1] for s in read), max(s[2] for s in read)
    seen = sum(s[0] for s in read)
    return seen / max(last - first, 1e-3), seen


def _consume_share(settings: dict[str, Any], topics: list[str], group: str,
                   members: int) -> tuple[int, float, float]:
    """One consumer of the group: (records read, first and last read time)."""
    k = settings["kafka"]

    async def go() -> tuple[int, float, float]:
        consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level=k["isolation_level"],
            max_partition_fetch_bytes=k["max_partition_fetch_bytes"],
            fetch_max_bytes=k["fetch_max_bytes"])
        await consumer.start()
        try:
            # Every member in before the clock: the group settles on one assignment.
            while len(consumer.assignment()) == 0 or await _rebalancing(consumer, members):
                await consumer.getmany(timeout_ms=100, max_records=1)
                await consumer.seek_to_beginning()
            mine = list(consumer.assignment())
            ends = await consumer.end_offsets(mine)
            seen, first, last = 0, 0.0, 0.0
            while [tp for tp in mine if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=k["fetch_timeout_ms"],
                                               max_records=k["fetch_max_records"])
                now = time.time()
                for records in batch.values():
                    if records and not seen:
                        first = now
                    seen += len(records)
                    last = now
            return seen, first, last
        finally:
            await consumer.stop()

    return asyncio.run(go())


async def _rebalancing(consumer: AIOKafkaConsumer, members: int) -> bool:
    """Until the group has all its members, each holds more than its share."""
    await asyncio.sleep(0.5)
    total = sum(len(consumer.partitions_for_topic(t) or ()) for t in consumer.subscription())
    return len(consumer.assignment()) > -(-total // members)


def build_rows(settings: Settings, records: list[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Weir's own rows for ``records`` (decoded, validated, transformed), built up front."""
    decoder = Decoder(settings, load_contracts(settings), load_chains(settings))
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for r in records:
        decoded = decoder.decode(r.topic, r.partition, r.offset, r.timestamp, r.value)
        if decoded is not None:
            rows.setdefault(decoded[0], []).append(decoded[1])
    return rows


async def write(settings: Settings, rows: dict[str, list[tuple[Any, ...]]],
                workers: int = 1) -> float:
    """Rows/s of COPY into staging + INSERT … ON CONFLICT, one transaction per batch.

    ``settings.pipeline.lanes`` connections per worker write batches of
    ``settings.batch.max_rows`` concurrently, as Weir's lanes do; the schema must be
    migrated and empty.
    """
    specs = {s.event_type: s for s in (table_spec(c, settings)
                                       for c in load_contracts(settings).values())}
    batches: asyncio.Queue[tuple[TableSpec, list[tuple[Any, ...]]]] = asyncio.Queue()
    size = settings.batch.max_rows
    for event_type, rs in rows.items():
        for i in range(0, len(rs), size):
            batches.put_nowait((specs[event_type], rs[i:i + size]))
    conns = [await _connect(specs.values()) for _ in range(settings.pipeline.lanes * workers)]
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
