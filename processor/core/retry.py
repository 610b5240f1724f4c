"""Run an operation until it works: backoff with full jitter for transient faults, a capped
backoff while stalled, and every other error handed back to the caller.

What to do with an error is the verdict's (:mod:`processor.core.verdict`); this module only acts
on it: *retry* waits and goes again, *stall* marks the part stalled (see
:mod:`processor.core.stalls`) and goes again on a slower cadence, *isolate* and *fatal* are
raised for the caller to act on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from processor.core import metrics
from processor.core.errors import describe
from processor.core.stalls import Stalls
from processor.core.verdict import Verdict, verdict

T = TypeVar("T")
log = structlog.get_logger(__name__)
STALL_BASE_S = 1.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays grow as ``base * 2**attempt`` up to ``cap``; each is drawn uniformly below that."""

    base_s: float = 0.1
    cap_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full jitter: spreads retries of many lanes and pods over the whole window."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** min(attempt, 30)))


Report = Callable[[Exception, int, float], None]


async def retry_transient(
    run: Callable[[], Awaitable[T]], what: str, backoff: Backoff | None = None,
    operation: str = "other", stalls: Stalls | None = None, *,
    attempts: int | None = None, report: Report | None = None, persist: bool = False,
) -> T:
    """Run ``run`` until it succeeds, or raise what retrying cannot fix.

    Transient faults are retried for as long as it takes: while PostgreSQL is away, nothing
    is committed, the lane buffers fill and the source waits. With ``stalls``, a *stall*
    verdict is retried too, ``what`` being the stalled part (unless ``postgres.on_stall`` is
    ``exit``); without, it is raised. Cancellation (shutdown) ends it.

    The callers that differ say how: ``attempts`` gives up after that many failures (a
    migration waiting for a busy table), ``report(exc, attempt, wait)`` replaces the
    ``retrying`` log line (start-up's ``waiting for …``), and ``persist`` retries every
    verdict but *fatal* (the fetch loop, which has nobody to hand an error to).
    """
    policy = backoff or Backoff()
    attempt = 0
    while True:
        try:
            result = await run()
        except Exception as exc:
            wait = _wait_before_next(exc, what, policy, attempt, stalls, persist)
            attempt += 1
            if attempts is not None and attempt >= attempts:
                raise
            metrics.RETRIES.labels(operation).inc()
            if report is not None:
                report(exc, attempt, wait)
            else:
                log.warning("retrying", operation=what, attempt=attempt,
                            error=describe(exc), retry_in_s=round(wait, 3))
            await asyncio.sleep(wait)
            continue
        if stalls is not None:
            stalls.leave(what)
        return result


def unless_fatal(exc: Exception, event: str, **fields: object) -> None:
    """A best-effort operation failed (a checkpoint, a Kafka commit, partition upkeep):
    raise ``exc`` if its verdict is *fatal*, else log ``event`` with the error and its
    verdict; the caller's next interval tries again."""
    answer = verdict(exc)
    if answer is Verdict.FATAL:
        raise exc
    log.warning(event, error=describe(exc), verdict=answer.value, **fields)


def _wait_before_next(exc: Exception, what: str, policy: Backoff, attempt: int,
                      stalls: Stalls | None, persist: bool) -> float:
    """How long to wait before the next attempt; raises ``exc`` if there is to be none."""
    answer = verdict(exc)
    stall = answer is Verdict.STALL and stalls is not None and not stalls.exit_on_stall
    if answer is not Verdict.RETRY and not stall and not (
            persist and answer is not Verdict.FATAL):
        raise exc
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        # Asked to stop, and an error replaced the CancelledError on its way out (asyncpg's
        # ROLLBACK on a connection the shutdown terminated, say): retrying would undo the
        # cancellation, so finish it instead.
        raise asyncio.CancelledError from exc
    if stall and stalls is not None:
        stalls.enter(what, exc)
        return Backoff(STALL_BASE_S, stalls.retry_max_s).delay(attempt)
    return policy.delay(attempt)
