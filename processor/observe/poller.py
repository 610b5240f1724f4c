"""Gauges that must be sampled rather than counted: lag, lane depth, pool use.

Lag per partition is refreshed on an interval from the log end offsets Kafka reports, even
while a partition is paused (``end_offsets`` is a metadata request, not a fetch), so lag
keeps rising on the dashboard while PostgreSQL is away. Lag in seconds is the age of the
oldest record that is fetched but not yet written.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from processor.batch.buffer import LaneBuffer
from processor.core import metrics
from processor.core.errors import describe
from processor.core.progress import ProgressBook, records_behind
from processor.core.records import TopicPartitionKey
from processor.core.tasks import pause

log = structlog.get_logger(__name__)


class LagPoller:
    """Samples lag, lane depths and pool use every ``interval_s``."""

    def __init__(self, consumer: AIOKafkaConsumer, book: ProgressBook,
                 buffers: Sequence[LaneBuffer], pool: asyncpg.Pool, interval_s: float,
                 readiness: Callable[[], Awaitable[bool]]) -> None:
        self._readiness = readiness
        self._consumer = consumer
        self._book = book
        self._buffers = buffers
        self._pool = pool
        self._interval_s = interval_s
        self._labelled: set[TopicPartitionKey] = set()
        # The last sample, for the status page: (lag records, lag seconds) per partition.
        self.latest: dict[TopicPartitionKey, tuple[int, float]] = {}
        self.written_per_s = 0.0
        self._written: tuple[float, float] | None = None  # (monotonic time, written total)
        self.ready = False

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample_local()
            self.ready = await self._readiness()
            metrics.READY.set(1 if self.ready else 0)
            try:
                await self.sample_lag()
            except KafkaError as exc:
                log.warning("lag sample failed", error=describe(exc))
            await pause(self._interval_s)

    def sample_local(self) -> None:
        """Lane depths and pool use: no I/O."""
        for lane, buffer in enumerate(self._buffers):
            metrics.LANE_ROWS.labels(str(lane)).set(buffer.rows)
            metrics.LANE_BYTES.labels(str(lane)).set(buffer.nbytes)
        metrics.POOL_IN_USE.set(self._pool.get_size() - self._pool.get_idle_size())
        now, total = time.monotonic(), metrics.total(metrics.EVENTS_WRITTEN)
        if self._written is not None and now > self._written[0]:
            self.written_per_s = (total - self._written[1]) / (now - self._written[0])
        self._written = (now, total)

    async def sample_lag(self) -> None:
        """Records and seconds behind, per owned partition."""
        owned = self._book.owned()
        ends = await self._consumer.end_offsets([TopicPartition(*tp) for tp in owned]) \
            if owned else {}
        now_ms = time.time() * 1000
        latest: dict[TopicPartitionKey, tuple[int, float]] = {}
        for tp, progress in owned.items():
            end = ends.get(TopicPartition(*tp))
            if end is None:
                continue
            behind = records_behind(end, progress.written_until)
            metrics.LAG_RECORDS.labels(*map(str, tp)).set(behind)
            oldest = progress.oldest_pending_ms
            age = (now_ms - oldest) / 1000 if oldest is not None else 0.0
            metrics.LAG_SECONDS.labels(*map(str, tp)).set(max(0.0, age))
            latest[tp] = (behind, max(0.0, age))
        self.latest = latest
        # Partitions that moved away stop being reported instead of freezing at a value.
        for tp in self._labelled - set(owned):
            metrics.LAG_RECORDS.remove(*map(str, tp))
            metrics.LAG_SECONDS.remove(*map(str, tp))
        self._labelled = set(owned)
