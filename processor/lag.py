"""``weir lag``: how far the group is behind, per topic-partition, without running the processor.

Two views side by side: the offsets stored in PostgreSQL with the rows (authoritative: what
is written) and the offsets committed to Kafka (what standard lag tools see).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processor.connections import kafka_client
from processor.settings import Settings
from processor.sink.offsets import OffsetStore
from processor.sink.pool import connect


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Lag of one topic-partition."""

    topic: str
    partition: int
    end_offset: int
    stored_offset: int | None
    kafka_committed: int | None

    @property
    def lag(self) -> int:
        """Records not yet written (by the PostgreSQL offsets)."""
        return self.end_offset - (self.stored_offset or 0)

    def as_dict(self) -> dict[str, int | str | None]:
        """For ``--json``."""
        return {**asdict(self), "lag": self.lag}


async def partition_lags(settings: Settings) -> list[PartitionLag]:
    """End offsets from Kafka, stored offsets from PostgreSQL, committed offsets from the group."""
    topics = [t.name for t in settings.topics]
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka))
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await consumer.start()
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        tps = [TopicPartition(d["topic"], p["partition"]) for d in described
               if d["error_code"] == 0 for p in sorted(d["partitions"], key=_partition)]
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = await admin.list_consumer_group_offsets(settings.kafka.group_id)
    finally:
        await consumer.stop()
        await admin.close()
    conn = await connect(settings)
    try:
        stored = await OffsetStore(settings).load(conn, topics)
    finally:
        await conn.close()
    return [
        PartitionLag(tp.topic, tp.partition, ends[tp], stored.get((tp.topic, tp.partition)),
                     committed[tp].offset if tp in committed else None)
        for tp in tps
    ]


def render(lags: list[PartitionLag]) -> str:
    """A plain table for a terminal."""
    head = f"{'topic':<24} {'part':>4} {'end':>10} {'stored':>10} {'kafka':>10} {'lag':>10}"
    lines = [head, "-" * len(head)]
    lines += [
        f"{lag.topic:<24} {lag.partition:>4} {lag.end_offset:>10} "
        f"{_num(lag.stored_offset):>10} {_num(lag.kafka_committed):>10} {lag.lag:>10}"
        for lag in lags
    ]
    lines.append(f"{'total':<24} {'':>4} {'':>10} {'':>10} {'':>10} "
                 f"{sum(x.lag for x in lags):>10}")
    return "\n".join(lines)


def _partition(described: dict[str, int]) -> int:
    return described["partition"]


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)
