"""Reading the dead-letter topics back, for ``weir dlq list | show | replay``.

Each dead-letter topic is read from its start to its end offsets at the time of the call,
without a consumer group (nothing is committed, nothing moves). Copies of one dead letter
(the topic is at-least-once across a crash) are folded into one by their source
coordinates, the ``weir-source-*`` headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processor.core.connections import kafka_client
from processor.core.records import Header
from processor.core.settings import Settings
from processor.deadletter.topic import OUR_HEADERS

Coords = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class TopicDeadLetter:
    """One dead letter as the topic holds it: source coordinates, the error, the original."""

    topic: str
    partition: int
    offset: int
    failed_at: datetime
    kafka_timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[Header]  # the original ones, byte for byte, without those Weir added
    event_type: str | None
    stage: str
    reason: str
    error: str
    group: str
    dlq: Coords  # where in the dead-letter topic it is

    @property
    def coords(self) -> Coords:
        """Source topic, partition and offset: the identity of the event."""
        return (self.topic, self.partition, self.offset)


def parse(record: object, dlq: Coords) -> TopicDeadLetter | None:
    """A dead-letter record's fields, or None if it lacks Weir's headers."""
    headers = list(getattr(record, "headers", ()) or ())
    ours = {k: (v or b"").decode("utf-8", "replace") for k, v in headers if k in OUR_HEADERS}
    try:
        return TopicDeadLetter(
            topic=ours["weir-source-topic"], partition=int(ours["weir-source-partition"]),
            offset=int(ours["weir-source-offset"]),
            failed_at=datetime.fromisoformat(ours["weir-failed-at"]),
            kafka_timestamp_ms=int(ours.get("weir-source-timestamp-ms", "0")) or None,
            key=getattr(record, "key", None),
            value=getattr(record, "value", None),
            headers=[(k, v) for k, v in headers if k not in OUR_HEADERS],
            event_type=ours.get("weir-event-type"), stage=ours["weir-stage"],
            reason=ours["weir-error-class"], error=ours.get("weir-error-message", ""),
            group=ours.get("weir-consumer-group", ""), dlq=dlq,
        )
    except (KeyError, ValueError):
        return None


async def _partitions(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described
            if t["error_code"] == 0 for p in t["partitions"]]


async def read_topic_dead_letters(settings: Settings,
                                  source: str | None = None) -> list[TopicDeadLetter]:
    """Every dead letter of this consumer group in the dead-letter topics, one per event."""
    sources = [t.name for t in settings.topics if source is None or t.name == source]
    tps = await _partitions(settings, [settings.dead_letters.topic_for(s) for s in sources])
    if not tps:
        return []
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka), enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: dict[Coords, TopicDeadLetter] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue  # published after we started: the next call sees it
                    dead = parse(record, (tp.topic, tp.partition, record.offset))
                    if dead is not None and dead.group == settings.kafka.group_id:
                        found.setdefault(dead.coords, dead)
    finally:
        await consumer.stop()
    return list(found.values())
