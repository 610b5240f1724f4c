"""Records fetched while an assignment is still being handled are never dropped.

When partitions are assigned, aiokafka may fetch their records while Weir's listener still
waits for the stored offsets (a PostgreSQL query, slow under load). Those records used to be
dropped for want of the partition's progress, with the consumer's position already past
them: ``--until-caught-up`` then stopped "caught up" having consumed nothing, and a long
run would have moved the partition's watermark over records it never wrote. Here the stored
offsets take two seconds to load, against the real Kafka: every record must still reach the
fetch loop, once, in order.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from processor.commands.produce.producer import ensure_topics
from processor.core.progress import ProgressBook
from processor.core.settings import KafkaSettings, Settings, TopicSettings
from processor.core.stalls import Stalls
from processor.source.consumer import KafkaSource
from tests.integration.conftest import KAFKA

PARTITIONS = 4
RECORDS = 400


class SlowStore:
    """No stored offsets, found slowly."""

    def __init__(self) -> None:
        self.loads = 0

    async def load(self, pool: Any, topics: list[str]) -> dict[Any, int]:
        self.loads += 1
        await asyncio.sleep(2.0)
        return {}


async def _scenario() -> dict[int, list[int]]:
    topic = f"it.{uuid.uuid4().hex[:8]}.race"
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=KAFKA, group_id=f"it-race-{uuid.uuid4().hex[:8]}"),
        event_types={}, topics=[TopicSettings(name=topic, type_field="type")])
    await ensure_topics(settings, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send(topic, str(i).encode(), partition=i % PARTITIONS)
        await producer.flush()
    finally:
        await producer.stop()

    async def drain(tps: Any) -> None:
        return None

    book = ProgressBook()
    source = KafkaSource(settings, None, SlowStore(), book, drain,  # type: ignore[arg-type]
                         Stalls(False, 0.1))
    seen: dict[int, list[int]] = {}
    await source.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while sum(map(len, seen.values())) < RECORDS and \
                asyncio.get_running_loop().time() < deadline:
            for progress, records in await source.fetch():
                seen.setdefault(progress.tp[1], []).extend(r.offset for r in records)
    finally:
        await source.stop()
    return seen


def test_records_fetched_during_the_assignment_are_not_dropped() -> None:
    seen = asyncio.run(_scenario())
    assert sum(map(len, seen.values())) == RECORDS, {p: len(o) for p, o in seen.items()}
    for offsets in seen.values():
        assert offsets == list(range(RECORDS // PARTITIONS))  # each once, in order
