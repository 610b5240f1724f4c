"""The dead-letter Kafka topic: the first place a dead letter goes, when it is enabled.

Each dead letter is published to its source topic's dead-letter topic
(``dead_letters.topic_template``) with the original key, value and headers, plus ``weir-*``
headers saying what failed, where and when. A publish is acknowledged by every in-sync
replica (``acks=all``, idempotent producer) before the batch's offsets may move past it.

At-least-once: a process that dies after the publish and before its batch commits publishes
the same dead letter again after the restart. ``weir-source-topic``, ``-partition`` and
``-offset`` identify the copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from processor.core.connections import kafka_client
from processor.core.errors import describe
from processor.core.records import DeadLetter, Header
from processor.core.settings import Settings
from processor.core.verdict import Verdict, verdict

log = structlog.get_logger(__name__)

# Kafka header values are bytes without a size limit of their own, but the whole record must
# fit the broker's message.max.bytes: a runaway error message must not make it unsendable.
MAX_ERROR_HEADER = 4096

# The headers Weir adds; an original header of the same name (a dead letter published
# again) is replaced, never doubled. Others, like ``weir-replay-of``, are kept.
OUR_HEADERS = frozenset({
    "weir-error-class", "weir-error-message", "weir-stage", "weir-source-topic",
    "weir-source-partition", "weir-source-offset", "weir-source-timestamp-ms",
    "weir-failed-at", "weir-attempts", "weir-consumer-group", "weir-event-type",
})


def dead_letter_headers(d: DeadLetter, group: str) -> list[Header]:
    """The original headers plus Weir's: error class and message, stage, source, time."""
    failed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    ours = [
        ("weir-error-class", d.reason), ("weir-error-message", d.error[:MAX_ERROR_HEADER]),
        ("weir-stage", d.stage), ("weir-source-topic", d.topic),
        ("weir-source-partition", str(d.partition)), ("weir-source-offset", str(d.offset)),
        ("weir-source-timestamp-ms", str(d.timestamp_ms)),
        ("weir-failed-at", failed_at), ("weir-attempts", str(d.attempts)),
        ("weir-consumer-group", group),
    ]
    if d.event_type is not None:
        ours.append(("weir-event-type", d.event_type))
    original = [(k, v) for k, v in d.headers if k not in OUR_HEADERS]
    # A message may hold a lone surrogate (a transform's exception quoting the event), which
    # strict UTF-8 refuses: the record must still be sendable.
    return original + [(k, v.encode("utf-8", "backslashreplace")) for k, v in ours]


def create_producer(settings: Settings) -> AIOKafkaProducer:
    """The process's one dead-letter producer, with the consumer's connection settings."""
    timeout_ms = int(settings.dead_letters.topic_timeout_s * 1000)
    return AIOKafkaProducer(
        **kafka_client(settings.kafka), client_id=f"{settings.kafka.client_id}-dlq",
        acks="all", enable_idempotence=True, request_timeout_ms=timeout_ms,
    )


class DeadLetterTopic:
    """Publishes dead letters; after a failure, skips the topic for ``topic_retry_s``.

    After a failed publish the producer is replaced by a fresh one before the next use: an
    idempotent producer whose record the broker refused (too large, say) gets every later
    record of that partition refused as out of sequence, for as long as it lives.
    """

    def __init__(self, settings: Settings,
                 make: Callable[[Settings], AIOKafkaProducer] = create_producer) -> None:
        self._make = make
        self._all = settings
        self._producer = make(settings)
        self._settings = settings.dead_letters
        self._group = settings.kafka.group_id
        self._skip_until = 0.0
        self._stale = False

    async def start(self) -> None:
        """Connect the producer (the pipeline does, before consuming)."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and close the producer (the pipeline does, last)."""
        await self._producer.stop()

    async def _renew(self) -> None:
        old, self._producer = self._producer, self._make(self._all)
        self._stale = False
        try:
            await asyncio.wait_for(old.stop(), self._settings.topic_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the old one is dropped whatever it says
            log.warning("old dead-letter producer did not close cleanly",
                        error=describe(exc), verdict=verdict(exc).value)
        await asyncio.wait_for(self._producer.start(), self._settings.topic_timeout_s)

    @property
    def available(self) -> bool:
        """False for a while after a failed publish: no batch waits on a known-bad topic."""
        return time.monotonic() >= self._skip_until

    async def publish(self, dead: Sequence[DeadLetter]) -> list[bool]:
        """Publish ``dead``; for each, whether Kafka acknowledged it within the timeout."""
        if self._stale:
            try:
                await self._renew()
            except Exception as exc:  # noqa: BLE001 - every failure falls back to the table
                self._stale = True  # the broker is away: try again after topic_retry_s
                self._skip_until = time.monotonic() + self._settings.topic_retry_s
                log.warning("dead-letter producer could not reconnect",
                            error=describe(exc), verdict=verdict(exc).value)
                return [False] * len(dead)
        sends = [asyncio.ensure_future(self._send(d)) for d in dead]
        done, pending = await asyncio.wait(sends, timeout=self._settings.topic_timeout_s)
        for task in pending:
            task.cancel()
        results: list[bool] = []
        topic_failing = bool(pending)
        for task in sends:
            error = task.exception() if task in done else None
            results.append(task in done and error is None)
            if error is not None:
                answer = verdict(error)
                # A record the broker refuses for itself (its size) says nothing of the topic.
                topic_failing = topic_failing or answer is not Verdict.ISOLATE
                log.warning("dead-letter topic refused a record", verdict=answer.value,
                            error=describe(error))
        if pending:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        if not all(results):
            # Even a record refused for itself spoils an idempotent producer: every later
            # record of that partition would be refused as out of sequence. Replace it.
            self._stale = True
        if topic_failing:
            self._skip_until = time.monotonic() + self._settings.topic_retry_s
        return results

    async def _send(self, d: DeadLetter) -> None:
        topic = self._settings.topic_for(d.topic)
        # send() waits for the topic's metadata, then enqueues; the future is the broker's ack.
        acked = await self._producer.send(topic, d.value, key=d.key,
                                          headers=dead_letter_headers(d, self._group))
        await acked


async def ensure_dead_letter_topics(settings: Settings) -> list[str]:
    """Create the dead-letter topics that do not exist yet (``weir migrate``); return all."""
    wanted = [settings.dead_letters.topic_for(t.name) for t in settings.topics]
    dl = settings.dead_letters
    partitions = dl.topic_partitions or settings.kafka.topic_partitions
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, num_partitions=partitions,
                        replication_factor=dl.topic_replication_factor)
               for name in wanted if name not in existing]
        if new:
            # Another replica's migrate may create it between our list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            log.info("created dead-letter topics", topics=[t.name for t in new])
    finally:
        await admin.close()
    return wanted
