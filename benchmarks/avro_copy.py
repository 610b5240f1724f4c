"""The run's events again, in Avro: the data set of the benchmark's Avro rows.

Before the Avro phases' clocks start, :func:`copy` reads every record of the JSON topics
``weir produce`` wrote and writes it again to the Avro phase's own topics: same key, same
partition, same order, same timestamp, and the same event, encoded by
:func:`processor.commands.produce.encode.encoder` (what ``weir produce --format avro`` uses: the
example schema ``schemas/<event type>.avsc`` registered under the topic's subject
``<topic>-value``, then Confluent's framing: magic byte 0, the schema id, the Avro binary
record). So Weir and Quix Streams read identical events in both formats, and the only
difference between the JSON and the Avro rows is the wire format.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.env import BOOTSTRAP, REGISTRY
from processor.commands.produce.encode import Encode, encoder
from processor.core.settings import Settings


def registry_missing() -> str | None:
    """Why the Avro phases cannot run here (the registry does not answer), or None."""
    address = urlsplit(REGISTRY)
    try:
        socket.create_connection((address.hostname, address.port or 80), timeout=1).close()
    except OSError:
        return f"the schema registry does not answer at {REGISTRY} (make up starts it)"
    return None


def encoders(settings: Settings, target: dict[str, str]) -> dict[str, Encode]:
    """Event type → its Avro encoder for its topic in ``target`` (registers the schemas)."""
    by_name = {t.name: t for t in settings.topics}
    return {et: encoder(settings, by_name[topic], et, "avro") for et, topic in target.items()}


async def copy(settings: Settings, source: dict[str, str], target: dict[str, str],
               partitions: int) -> dict[str, int]:
    """Every record of ``source`` (event type → JSON topic), as Avro, to ``target``'s topics.

    ``settings`` is the Avro phase's config (its topics are ``target``, its registry the
    stack's). Returns the record count and the value bytes read (JSON) and written (Avro).
    """
    await _create(list(target.values()), partitions)
    encode = await asyncio.to_thread(encoders, settings, target)
    routes = {source[et]: (target[et], encode[et]) for et in source}
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5,
                                enable_idempotence=True, max_batch_size=1024 * 1024)
    await consumer.start()
    await producer.start()
    totals = {"records": 0, "json_bytes": 0, "avro_bytes": 0}
    try:
        parts = [TopicPartition(t, p) for t in routes for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        first, ends = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
        left = sum(ends[tp] - first[tp] for tp in parts)
        pending: list[asyncio.Future[Any]] = []
        while left > 0:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                topic, to_avro = routes[tp.topic]
                for r in records:
                    value = to_avro(orjson.loads(r.value))
                    # One partition's records are sent in order to one partition, and the
                    # idempotent producer keeps that order through its retries.
                    pending.append(await producer.send(
                        topic, value, key=r.key, partition=tp.partition,
                        timestamp_ms=r.timestamp))
                    totals["json_bytes"] += len(r.value)
                    totals["avro_bytes"] += len(value)
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


async def _create(topics: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                   for t in topics])
    finally:
        await admin.close()
