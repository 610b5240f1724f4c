"""The same events in the envelope Kafka Connect's JSON converter reads with schemas on.

The Debezium JDBC sink types its columns from the record's Connect schema; with
``value.converter.schemas.enable=true`` the JSON converter takes that schema from every
message: ``{"schema": {...}, "payload": {...}}``. So before the Connect phase's clock starts,
:func:`copy` reads the run's topics and writes every record again, wrapped, to the phase's
own topics: same key, same partition, same timestamp, same event. Two things differ in the
payload: ``items`` is a JSON string (the sink writes a struct array into no column type,
but a ``io.debezium.data.Json`` string into ``jsonb``), and the schema comes along, which
makes each message several times longer. The phase reports both sizes; the longer
messages are Kafka Connect's to read and parse, as any user of the sink pays for them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.env import BOOTSTRAP

# (field, Connect type, optional, logical name). Names are Debezium's semantic types, which
# the sink maps to PostgreSQL's uuid, timestamptz (from ISO-8601 text) and jsonb.
UUID, ZONED, JSON = "io.debezium.data.Uuid", "io.debezium.time.ZonedTimestamp", \
    "io.debezium.data.Json"
FIELDS: dict[str, list[tuple[str, str, bool, str | None]]] = {
    "order": [
        ("event_id", "string", False, UUID), ("customer_id", "string", False, None),
        ("seq", "int64", False, None), ("occurred_at", "string", False, ZONED),
        ("order_id", "string", False, None), ("status", "string", False, None),
        ("amount", "double", False, None), ("currency", "string", False, None),
        ("items", "string", False, JSON), ("channel", "string", True, None),
    ],
    "page_view": [
        ("event_id", "string", False, UUID), ("user_id", "string", False, None),
        ("seq", "int64", False, None), ("occurred_at", "string", False, ZONED),
        ("session_id", "string", False, None), ("url", "string", False, None),
        ("referrer", "string", True, None), ("user_agent", "string", True, None),
        ("duration_ms", "int64", True, None),
    ],
}


def schema(event_type: str) -> dict[str, Any]:
    """The Connect schema of ``event_type``'s events, as the JSON converter writes one."""
    fields = []
    for name, kind, optional, logical in FIELDS[event_type]:
        field: dict[str, Any] = {"field": name, "type": kind, "optional": optional}
        if logical:
            field["name"] = logical
        fields.append(field)
    return {"type": "struct", "name": f"weir.{event_type}", "optional": False,
            "fields": fields}


class Wrapper:
    """Wraps one event type's raw events; the schema is encoded once."""

    def __init__(self, event_type: str) -> None:
        self._head = b'{"schema":' + orjson.dumps(schema(event_type)) + b',"payload":'
        self._fields = [f[0] for f in FIELDS[event_type]]

    def __call__(self, value: bytes) -> bytes:
        """The envelope of one event (its fields in schema order; ``items`` as text)."""
        event = orjson.loads(value)
        if "items" in event:
            event["items"] = orjson.dumps(event["items"]).decode()
        payload = {name: event.get(name) for name in self._fields}
        return self._head + orjson.dumps(payload) + b"}"


async def copy(source: dict[str, str], target: dict[str, str],
               partitions: int) -> dict[str, int]:
    """Every record of ``source`` (event type → topic), wrapped, to ``target``'s topics.

    Returns the record count and the value bytes read and written.
    """
    await create_topics(list(target.values()), partitions)
    wrappers = {source[et]: (target[et], Wrapper(et)) for et in source}
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5,
                                enable_idempotence=True, max_batch_size=1024 * 1024,
                                max_request_size=8 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    totals = {"records": 0, "source_bytes": 0, "envelope_bytes": 0}
    try:
        parts = [TopicPartition(t, p) for t in wrappers for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        first, ends = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
        left = sum(ends[tp] - first[tp] for tp in parts)
        pending: list[asyncio.Future[Any]] = []
        while left > 0:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                topic, wrap = wrappers[tp.topic]
                for r in records:
                    value = wrap(r.value)
                    pending.append(await producer.send(
                        topic, value, key=r.key, partition=tp.partition,
                        timestamp_ms=r.timestamp))
                    totals["source_bytes"] += len(r.value)
                    totals["envelope_bytes"] += len(value)
                totals["records"] += len(records)
                left -= len(records)
            if len(pending) > 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        await consumer.stop()
    return totals


async def create_topics(topics: list[str], partitions: int) -> None:
    """Create ``topics`` with ``partitions`` partitions each (one replica: the local broker)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                   for t in topics])
    finally:
        await admin.close()
