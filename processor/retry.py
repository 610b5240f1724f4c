"""Retry with exponential backoff and full jitter, for transient faults only."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from processor import metrics
from processor.classify import is_transient

T = TypeVar("T")
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays grow as ``base * 2**attempt`` up to ``cap``; each is drawn uniformly below that."""

    base_s: float = 0.1
    cap_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full jitter: spreads retries of many lanes and pods over the whole window."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** min(attempt, 30)))


async def retry_transient(
    run: Callable[[], Awaitable[T]], what: str, backoff: Backoff | None = None,
    operation: str = "other",
) -> T:
    """Run ``run`` until it succeeds or fails permanently; ``operation`` labels the metric.

    Transient faults are retried for as long as it takes: while PostgreSQL is away, nothing is
    committed, the lane buffers fill and the source waits. Cancellation (shutdown) ends it.
    """
    policy = backoff or Backoff()
    attempt = 0
    while True:
        try:
            return await run()
        except Exception as exc:
            if not is_transient(exc):
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Asked to stop, and an error replaced the CancelledError on its way out
                # (asyncpg's ROLLBACK on a connection the shutdown terminated, say):
                # retrying would undo the cancellation, so finish it instead.
                raise asyncio.CancelledError from exc
            wait = policy.delay(attempt)
            metrics.RETRIES.labels(operation).inc()
            log.warning("retrying", operation=what, attempt=attempt + 1,
                        error=f"{type(exc).__name__}: {exc}", retry_in_s=round(wait, 3))
            attempt += 1
            await asyncio.sleep(wait)
