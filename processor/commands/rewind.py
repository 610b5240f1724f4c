"""``weir offsets show|rewind``: see and move a group's position, exactly-once safe.

PostgreSQL's offsets table is the truth (``weir run`` resumes from it on every
assignment); Kafka's committed offsets follow it, for lag tools. A rewind writes both, for
the same positions, PostgreSQL first, and only while the group has no live member: a
running member would overwrite the stored offsets with its own watermarks at its next
commit, and a rebalance could resume it from either. Moving an offset is idempotent.

What a replay then does is the tables' business, and safe by their keys: an insert table's
unique key absorbs the events already written (missing ones are filled), an upsert table
applies the events again in offset order and never lets an older one overwrite a newer row,
and rollups count only rows really inserted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processor.core.connections import connect, kafka_client
from processor.core.offsets import OffsetStore
from processor.core.records import TopicPartitionKey
from processor.core.settings import Settings


class GroupIsLive(Exception):
    """The group has members: a rewind now would race them."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where one partition stands, from both sides."""

    topic: str
    partition: int
    stored: int | None           # PostgreSQL's next offset: where `weir run` resumes
    stored_at: datetime | None   # when that was stored
    committed: int | None        # Kafka's committed offset of the group
    log_start: int
    log_end: int

    def as_dict(self) -> dict[str, object]:
        """For ``--json``."""
        return {**asdict(self), "stored_at": self.stored_at.isoformat()
                if self.stored_at else None}


@dataclass(frozen=True, slots=True)
class Move:
    """One partition's planned rewind."""

    topic: str
    partition: int
    stored: int | None
    to: int


@dataclass(frozen=True, slots=True)
class Target:
    """Exactly one of: a time (ms since the epoch), an offset, the log start, the log end."""

    time_ms: int | None = None
    offset: int | None = None
    earliest: bool = False
    latest: bool = False


async def positions(settings: Settings, topic: str | None = None,
                    partition: int | None = None, group: str | None = None) -> list[Position]:
    """Every matching partition of the configured topics, from Kafka and PostgreSQL, for
    ``group`` (default: ``kafka.group_id``); in config order of the topics, then by
    partition."""
    group = group or settings.kafka.group_id
    topics = [t.name for t in settings.topics if topic is None or t.name == topic]
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka))
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await consumer.start()
    await admin.start()
    try:
        described = await admin.describe_topics(topics) if topics else []
        tps = sorted((TopicPartition(d["topic"], p["partition"]) for d in described
                      if d["error_code"] == 0 for p in d["partitions"]
                      if partition is None or p["partition"] == partition),
                     key=lambda tp: (topics.index(tp.topic), tp.partition))
        starts = await consumer.beginning_offsets(tps) if tps else {}
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await consumer.stop()
        await admin.close()
    conn = await connect(settings)
    try:
        store = OffsetStore(settings)
        store.group = group
        stored = await store.positions(conn, topics)
    finally:
        await conn.close()
    result = []
    for tp in tps:
        offset, at = stored.get((tp.topic, tp.partition), (None, None))
        result.append(Position(tp.topic, tp.partition, offset, at,
                               committed[tp].offset if tp in committed else None,
                               starts[tp], ends[tp]))
    return result


async def plan(settings: Settings, target: Target, topic: str | None = None,
               partition: int | None = None) -> list[Move]:
    """Where each matching partition would move; changes nothing."""
    now = await positions(settings, topic, partition)
    by_time: dict[TopicPartition, int | None] = {}
    if target.time_ms is not None:
        by_time = await _offsets_for_time(settings, [TopicPartition(p.topic, p.partition)
                                                     for p in now], target.time_ms)
    moves = []
    for p in now:
        if target.earliest:
            to = p.log_start
        elif target.latest:
            to = p.log_end
        elif target.offset is not None:
            to = min(max(target.offset, p.log_start), p.log_end)
        else:
            found = by_time.get(TopicPartition(p.topic, p.partition))
            to = p.log_end if found is None else found  # nothing that late: the end
        moves.append(Move(p.topic, p.partition, p.stored, to))
    return moves


async def _offsets_for_time(settings: Settings, tps: list[TopicPartition],
                            time_ms: int) -> dict[TopicPartition, int | None]:
    # Kafka has no record before the epoch (a record's timestamp is at least 0) and its
    # lookup refuses a negative time: "the first offset at or after" 1969 is the one at or
    # after 0, the log start, as for any time before the first record.
    time_ms = max(time_ms, 0)
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka))
    await consumer.start()
    try:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, time_ms))
    finally:
        await consumer.stop()
    return {tp: (None if hit is None else hit.offset) for tp, hit in found.items()}


async def live_members(settings: Settings) -> list[str]:
    """The group's members as ``client_id@host (member_id)``; empty when none is up."""
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([settings.kafka.group_id])
    finally:
        await admin.close()
    members = []
    for response in responses:
        for group in response.groups:
            if group[1] != settings.kafka.group_id:
                continue
            members += [f"{m[1]}@{m[2].lstrip('/')} ({m[0]})" for m in group[5]]
    return members


async def apply(settings: Settings, moves: list[Move]) -> None:
    """Write ``moves`` to PostgreSQL, then to Kafka; refuse while the group is live."""
    members = await live_members(settings)
    if members:
        raise GroupIsLive(f"group {settings.kafka.group_id!r} has live members, stop them "
                          f"first: {', '.join(members)}")
    marks: dict[TopicPartitionKey, int] = {(m.topic, m.partition): m.to for m in moves}
    conn = await connect(settings)
    try:
        async with conn.transaction():
            await OffsetStore(settings).reset(conn, marks)
    finally:
        await conn.close()
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka),
                                group_id=settings.kafka.group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(t, p): offset for (t, p), offset in marks.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


def render_positions(rows: list[Position]) -> str:
    """A plain table for a terminal."""
    head = (f"{'topic':<28} {'part':>4} {'stored':>10} {'kafka':>10} {'start':>10} "
            f"{'end':>10}  stored at")
    lines = [head, "-" * len(head)]
    lines += [f"{r.topic:<28} {r.partition:>4} {_num(r.stored):>10} {_num(r.committed):>10} "
              f"{r.log_start:>10} {r.log_end:>10}  "
              f"{r.stored_at.isoformat(timespec='seconds') if r.stored_at else '-'}"
              for r in rows]
    return "\n".join(lines)


def render_plan(moves: list[Move]) -> str:
    """The plan, one partition a line."""
    return "\n".join(f"{m.topic}:{m.partition}  {_num(m.stored)} -> {m.to}" for m in moves)


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)
