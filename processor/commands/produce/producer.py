"""Publish sample events at a target rate, optionally logging every acknowledged record.

The acknowledgement log (JSON lines: topic, partition, offset, key, seq, event id) is what a
correctness checker compares PostgreSQL against: it records what Kafka really accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from tqdm import tqdm

from processor.commands.produce.encode import encoder
from processor.commands.produce.sample import SampleEvents
from processor.core.connections import kafka_client
from processor.core.keys import canonical_key
from processor.core.settings import Settings


@dataclass(frozen=True, slots=True)
class ProduceReport:
    """What ``weir produce`` published."""

    count: int
    by_topic: dict[str, int]
    seconds: float


async def ensure_topics(settings: Settings, partitions: int) -> None:
    """Create the configured source topics if they do not exist."""
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t.name, num_partitions=partitions, replication_factor=1)
               for t in settings.topics if t.name not in existing]
        if new:
            # Another producer may create it between our list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()
    if new:
        await _wait_until_led(settings, [t.name for t in new], partitions)


async def _wait_until_led(settings: Settings, topics: list[str], partitions: int,
                          patience_s: float = 30.0) -> None:
    """Return once the broker leads every partition of the new ``topics``.

    The controller names a partition's leader a moment before that broker hosts it; a
    produce in between is answered NotLeaderForPartition, which the idempotent producer
    can hand back to the caller as a failed send. A ListOffsets is answered only by the
    partition's real leader, so once every partition answers one, sends go through.
    """
    probe = AIOKafkaConsumer(**kafka_client(settings.kafka), enable_auto_commit=False)
    await probe.start()
    try:
        wanted = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        deadline = time.monotonic() + patience_s
        while True:
            try:
                await probe.end_offsets(wanted)
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
            else:
                return
    finally:
        await probe.stop()


def topic_for(settings: Settings, event_type: str, only: str | None = None) -> str:
    """The source topic that carries ``event_type`` (the first, or ``only``)."""
    for topic in settings.topics:
        if only is not None and topic.name != only:
            continue
        if topic.event_type == event_type or topic.type_field is not None:
            return topic.name
    raise ValueError(f"no configured topic {'' if only is None else repr(only) + ' '}"
                     f"carries event type {event_type!r}")


async def produce(
    settings: Settings, count: int, rate: float | None, event_types: list[str],
    seed: int = 7, ack_log: Path | None = None, show_progress: bool = True,
    spread_days: float = 0.0, seq_base: int = 0, invalid_ratio: float = 0.0,
    fmt: str | None = None, topic: str | None = None, rich: bool = False,
) -> ProduceReport:
    """Publish ``count`` events round-robin over ``event_types`` at up to ``rate`` per second.

    Each topic's events are written in its configured format, or in ``fmt`` for all;
    ``topic`` names the one topic to write to (default: the first carrying each type)."""
    await ensure_topics(settings, settings.kafka.topic_partitions)
    sample = SampleEvents(seed=seed, spread_days=spread_days, seq_base=seq_base, rich=rich)
    pick = random.Random(seed + 1)  # which records are broken, independent of their content
    topics = {et: topic_for(settings, et, topic) for et in event_types}
    by_name = {t.name: t for t in settings.topics}
    encoders = {et: await asyncio.to_thread(encoder, settings, by_name[name], et,
                                            fmt or by_name[name].format)
                for et, name in topics.items()}
    by_topic = dict.fromkeys(topics.values(), 0)
    producer = AIOKafkaProducer(
        **kafka_client(settings.kafka), acks="all",
        enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024,
    )
    await producer.start()
    log_file: IO[bytes] | None = ack_log.open("ab") if ack_log else None
    started = time.monotonic()
    pending: list[tuple[asyncio.Future[Any], str, Any]] = []
    try:
        with tqdm(total=count, unit="ev", disable=not show_progress, mininterval=0.5) as bar:
            for i in range(count):
                event_type = event_types[i % len(event_types)]
                target = topics[event_type]
                if invalid_ratio and pick.random() < invalid_ratio:
                    key, value, kind = sample.make_invalid(event_type)
                    event: dict[str, Any] = {"invalid": kind}
                    headers = []
                else:
                    key, event = sample.make(event_type)
                    headers = sample.headers(event_type, key)
                    key = kafka_key(settings, event_type, event, key)
                    value = encoders[event_type](event)
                fut = await producer.send(target, value, key=key.encode(), headers=headers)
                pending.append((fut, key, event))
                by_topic[target] += 1
                if len(pending) >= 1000 or i == count - 1:
                    await _settle(pending, log_file)
                    bar.update(len(pending))
                    pending.clear()
                if rate:
                    ahead = (i + 1) / rate - (time.monotonic() - started)
                    if ahead > 0.005:
                        await asyncio.sleep(ahead)
    finally:
        await producer.stop()
        if log_file:
            log_file.close()
    return ProduceReport(count, by_topic, time.monotonic() - started)


def kafka_key(settings: Settings, event_type: str, event: dict[str, Any], default: str) -> str:
    """The Kafka key producers must give ``event``: on an upsert table keyed by the Kafka key,
    the key's canonical form (the one its tombstones must carry too, so that all of one
    key's events share a partition); else the key field's value; else ``default``."""
    et = settings.event_types[event_type]
    if et.write_mode == "upsert" and et.keyed_by_kafka_key:
        return canonical_key(event, et.upsert_key).decode()
    if et.key_field is not None and et.key_field in event:
        return canonical_key(event, [et.key_field]).decode()
    return default


async def _settle(pending: list[tuple[asyncio.Future[Any], str, Any]],
                  log_file: IO[bytes] | None) -> None:
    metas = await asyncio.gather(*(fut for fut, _, _ in pending))
    if log_file is None:
        return
    lines = [
        orjson.dumps({"topic": m.topic, "partition": m.partition, "offset": m.offset,
                      "key": key, "seq": event.get("seq"), "event_id": event.get("event_id"),
                      **({"invalid": event["invalid"]} if "invalid" in event else {})})
        for m, (_, key, event) in zip(metas, pending, strict=True)
    ]
    log_file.write(b"\n".join(lines) + b"\n")
