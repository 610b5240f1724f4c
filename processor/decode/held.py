"""Partitions held for a schema the registry has not answered for yet.

A framed record whose schema id is not cached cannot be decoded, and must not become a dead
letter: the registry being away is not the event's fault. Its partition is *held*: that
record and every later record of the partition (those already fetched, and those still in
the decode queue) wait here, in offset order, and the source pauses the partition so no
more are fetched. The other partitions, and every record whose schema is cached, go on.
Once the registry answers, the held records are decoded in order and the partition resumes.

Held records belong to chunks that are open in the partition's progress, so its watermark
stays below them: nothing past a held record is committed, and a crash or a rebalance
meanwhile replays them from Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from processor.core.progress import PartitionProgress
from processor.core.records import Chunk, TopicPartitionKey

Pause = Callable[[TopicPartitionKey], None]


@dataclass(slots=True)
class Segment:
    """Records of one chunk still to decode, from ``start`` on."""

    progress: PartitionProgress
    chunk: Chunk
    records: list[Any]
    start: int = 0


@dataclass(slots=True)
class Holding:
    """One held partition: its records in offset order and the schema id they wait for."""

    schema_id: int
    segments: list[Segment] = field(default_factory=list)


class HeldPartitions:
    """The decode stage's held partitions; pausing and resuming them is the source's."""

    def __init__(self, hold: Pause | None = None, release: Pause | None = None) -> None:
        self._hold = hold
        self._release = release
        self.partitions: dict[TopicPartitionKey, Holding] = {}

    def __contains__(self, tp: TopicPartitionKey) -> bool:
        return tp in self.partitions

    def hold(self, tp: TopicPartitionKey, schema_id: int, segment: Segment) -> None:
        """Hold ``tp`` (not held yet) from ``segment`` on, waiting for ``schema_id``; pause
        it."""
        self.partitions[tp] = Holding(schema_id, [segment])
        if self._hold is not None:
            self._hold(tp)

    def append(self, tp: TopicPartitionKey, segment: Segment) -> None:
        """Later records of a held partition wait behind the held ones."""
        self.partitions[tp].segments.append(segment)

    def release(self, tp: TopicPartitionKey) -> None:
        """``tp`` has nothing held any more: it may be fetched again."""
        if self.partitions.pop(tp, None) is not None and self._release is not None:
            self._release(tp)

    def prune(self, tp: TopicPartitionKey) -> bool:
        """Forget held records whose partition moved away (its next owner replays them
        from Kafka); is ``tp`` still held?"""
        holding = self.partitions.get(tp)
        if holding is None:
            return False
        kept = [s for s in holding.segments if not s.progress.revoked]
        if holding.segments and not kept:
            del self.partitions[tp]  # the revocation dropped its pause with it
            return False
        holding.segments = kept
        return True

    def waiting(self) -> list[tuple[TopicPartitionKey, int]]:
        """The held partitions and the schema id each waits for."""
        return [(tp, h.schema_id) for tp, h in self.partitions.items()]
