"""Before partitions move to another member: write what is buffered for them, drop the rest.

aiokafka awaits the revocation listener before the group moves on, so this runs while the
partitions are still ours. Every lane is asked to flush at once; the wait for the revoked
partitions to have nothing in flight is bounded by ``pipeline.rebalance_drain_timeout_s``.
What is still buffered after that is dropped: it is not committed, so the next owner reads
it again. Then those partitions' watermarks are checkpointed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from processor.batch.buffer import LaneBuffer
from processor.core.progress import ProgressBook
from processor.core.records import TopicPartitionKey
from processor.source.backpressure import Backpressure

log = structlog.get_logger(__name__)


class RebalanceDrain:
    """The revocation hook of the source (``KafkaSource``'s ``drain``)."""

    def __init__(self, buffers: Sequence[LaneBuffer], book: ProgressBook,
                 checkpoint: Callable[[set[TopicPartitionKey]], Awaitable[None]],
                 timeout_s: float) -> None:
        self._buffers = buffers
        self._book = book
        self._checkpoint = checkpoint
        self._timeout_s = timeout_s
        self.backpressure: Backpressure | None = None  # set once the consumer exists

    async def __call__(self, tps: set[TopicPartitionKey]) -> None:
        """Drain ``tps``: flush, wait (bounded), purge what is left, checkpoint."""
        for buffer in self._buffers:
            await buffer.flush_now()
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            pending = [tp for tp in tps if (p := self._book.get(tp)) is not None and not p.idle]
            if not pending:
                break
            await asyncio.sleep(0.02)
        dropped = 0
        for buffer in self._buffers:
            dropped += await buffer.purge(tps)
        if self.backpressure is not None:
            self.backpressure.forget(tps)
        if dropped:
            log.warning("abandoned buffered events of revoked partitions; the next owner "
                        "replays them", events=dropped)
        await self._checkpoint(tps)
