"""Backpressure: pause the partitions that feed a full lane, resume them once it drains.

Why pause instead of letting the source wait: a consumer that stops calling ``getmany``
for longer than ``max_poll_interval_ms`` is thrown out of the group, and every member
then rebalances, over and over, for as long as PostgreSQL is slow. A paused partition is
simply not fetched; the fetch loop keeps polling (and returns nothing for it), so the
group membership holds however long the outage lasts, and memory stays at the lane
bounds plus what was already in flight when the pause began.

Hysteresis: a lane is *full* at its capacity (rows or bytes) and *drained* at
``pipeline.resume_ratio`` of it. A partition is paused while any full lane holds its
events, and resumed when every lane that paused it has drained.

A *stalled* lane (:mod:`processor.core.stalls`: PostgreSQL refuses its work until an operator
acts) counts as full whatever it holds: every partition with events waiting in it is paused
at once, instead of the lane filling to capacity first, and stays paused until the stall is
over and the lane has drained.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.core import metrics
from processor.core.records import TopicPartitionKey
from processor.core.settings import Settings
from processor.core.stalls import Stalls

log = structlog.get_logger(__name__)


class LaneFill(Protocol):
    """What backpressure reads of a lane's buffer (the batch stage's)."""

    @property
    def rows(self) -> int:
        """Events buffered."""

    @property
    def nbytes(self) -> int:
        """Their size."""

    def partitions(self) -> set[TopicPartitionKey]:
        """The partitions they came from."""


class Backpressure:
    """Keeps the consumer's paused set in step with the lanes' fill levels."""

    def __init__(
        self, consumer: AIOKafkaConsumer, buffers: Sequence[LaneFill], settings: Settings,
        stalls: Stalls,
    ) -> None:
        self._stalls = stalls
        self._consumer = consumer
        self._buffers = buffers
        self._high_rows = settings.lane_capacity_rows
        self._high_bytes = settings.lane_capacity_bytes
        ratio = settings.pipeline.resume_ratio
        self._low_rows = int(self._high_rows * ratio)
        self._low_bytes = int(self._high_bytes * ratio)
        self._full: set[int] = set()
        # What keeps each partition paused: lanes (their index), or a named hold.
        self._paused_by: dict[TopicPartitionKey, set[int | str]] = defaultdict(set)

    @property
    def paused(self) -> set[TopicPartitionKey]:
        """Partitions currently paused by backpressure."""
        return set(self._paused_by)

    def update(self) -> None:
        """Pause for lanes that just filled; resume for lanes that just drained."""
        stalled = self._stalls.parts
        for lane, buffer in enumerate(self._buffers):
            if stalled and self._stalls.lane_stalled(lane):
                # Partitions keep arriving in a stalled lane: pause each as it does.
                self._full.add(lane)
                self._pause(lane, buffer)
            elif lane not in self._full and (
                buffer.rows >= self._high_rows or buffer.nbytes >= self._high_bytes
            ):
                self._full.add(lane)
                self._pause(lane, buffer)
            elif lane in self._full and (
                buffer.rows <= self._low_rows and buffer.nbytes <= self._low_bytes
            ):
                self._full.discard(lane)
                self._resume(lane, buffer)

    def _pause(self, lane: int, buffer: LaneFill) -> None:
        assigned = self._consumer.assignment()
        new = []
        for tp in sorted(buffer.partitions()):  # a stable order for the pause and its log line
            if TopicPartition(*tp) not in assigned:
                continue
            if not self._paused_by[tp]:
                new.append(tp)
            self._paused_by[tp].add(lane)
        if new:
            self._consumer.pause(*(TopicPartition(*tp) for tp in new))
            metrics.PARTITION_PAUSES.inc(len(new))
            log.info("partitions paused", lane=lane, lane_rows=buffer.rows,
                     lane_bytes=buffer.nbytes, partitions=_names(new))
        self._publish()

    def _resume(self, lane: int, buffer: LaneFill) -> None:
        ready = []
        for tp, lanes in list(self._paused_by.items()):
            lanes.discard(lane)
            if not lanes:
                del self._paused_by[tp]
                ready.append(tp)
        assigned = self._consumer.assignment()
        resumable = [TopicPartition(*tp) for tp in ready if TopicPartition(*tp) in assigned]
        if resumable:
            self._consumer.resume(*resumable)
            log.info("partitions resumed", lane=lane, lane_rows=buffer.rows,
                     lane_bytes=buffer.nbytes, partitions=_names(ready))
        self._publish()

    def hold(self, tp: TopicPartitionKey, why: str) -> None:
        """Pause ``tp`` for ``why`` (the decode stage waiting for the schema registry)
        until :meth:`release`, whatever the lanes do meanwhile."""
        if TopicPartition(*tp) not in self._consumer.assignment():
            return
        if not self._paused_by[tp]:
            self._consumer.pause(TopicPartition(*tp))
            metrics.PARTITION_PAUSES.inc()
            log.info("partition paused", partition=f"{tp[0]}:{tp[1]}", why=why)
        self._paused_by[tp].add(why)
        self._publish()

    def release(self, tp: TopicPartitionKey, why: str) -> None:
        """End a :meth:`hold`; ``tp`` resumes unless a full lane still pauses it."""
        held = self._paused_by.get(tp)
        if held is None or why not in held:
            return
        held.discard(why)
        if not held:
            del self._paused_by[tp]
            if TopicPartition(*tp) in self._consumer.assignment():
                self._consumer.resume(TopicPartition(*tp))
                log.info("partition resumed", partition=f"{tp[0]}:{tp[1]}", why=why)
        self._publish()

    def forget(self, tps: Iterable[TopicPartitionKey]) -> None:
        """Partitions that moved away: the consumer dropped their pause with them."""
        for tp in tps:
            self._paused_by.pop(tp, None)
        self._publish()

    def _publish(self) -> None:
        metrics.PAUSED_PARTITIONS.set(len(self._paused_by))


def _names(tps: Iterable[TopicPartitionKey]) -> list[str]:
    return sorted(f"{t}:{p}" for t, p in tps)
