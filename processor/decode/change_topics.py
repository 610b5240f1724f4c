"""Debezium's change topics as Kafka has them: which exist, and the newest change of each.

A mirror's shape comes from the change events themselves: Kafka Connect's JSON converter
(``schemas.enable=true``, its default) sends each with the Connect schema of the captured
table's row, and the record's key names the row's primary key. This reads, for many topics
at once, the newest change event that carries a schema: ``weir cdc-contract`` writes a
contract from it, and ``cdc.mirrors`` derives its mirrors from it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processor.core.connections import kafka_client
from processor.core.debezium_types import record_struct
from processor.core.settings import Settings

NEWEST = 200  # records read back per partition, past tombstones and schemaless records
READ_S = 30.0  # at most this long reading them back, however many topics


@dataclass(frozen=True, slots=True)
class NewestChange:
    """A topic's newest change event with an embedded schema: the envelope's schema, and
    the field names of its record key (the row's primary key; empty for a table without
    one, whose changes Debezium sends unkeyed)."""

    schema: dict[str, Any]
    key: tuple[str, ...]
    timestamp: int


async def list_topics(settings: Settings) -> list[str]:
    """The cluster's topics, Kafka's internal ones left out."""
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    return sorted(n for n in names if not n.startswith("__"))


async def newest_changes(settings: Settings, topics: Iterable[str]
                         ) -> dict[str, NewestChange]:
    """Per topic, its newest change event with an embedded schema; a topic that has none
    among the newest :data:`NEWEST` records of each partition (or does not exist) is left
    out."""
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(set(topics)))
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described
           if d["error_code"] == 0 for p in d["partitions"]]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka), enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    best: dict[str, NewestChange] = {}
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        todo = set()
        for tp in tps:
            first = max(starts[tp], ends[tp] - NEWEST)
            if first < ends[tp]:
                consumer.seek(tp, first)
                todo.add(tp)
        deadline = time.monotonic() + READ_S
        while todo and time.monotonic() < deadline:
            batch = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    found = _change(record.key, record.value, record.timestamp)
                    old = best.get(tp.topic)
                    if found is not None and (old is None or found.timestamp >= old.timestamp):
                        best[tp.topic] = found
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
            if not batch:
                break  # nothing more within the wait: take what was read
    finally:
        await consumer.stop()
    return best


def _change(key: bytes | None, value: bytes | None, timestamp: int) -> NewestChange | None:
    """A change event with an embedded schema of ``after`` (and its key's fields), or None."""
    event = _json(value)
    schema = event.get("schema") if isinstance(event, dict) else None
    if not isinstance(schema, dict) or record_struct(schema, "after") is None:
        return None
    fields = _json(key)
    if isinstance(fields, dict) and "payload" in fields and "schema" in fields:
        fields = fields["payload"]  # the key converter's schemas on
    names = tuple(fields) if isinstance(fields, dict) else ()
    return NewestChange(schema, names, timestamp)


def _json(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
