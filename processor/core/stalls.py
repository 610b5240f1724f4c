"""Which parts of the pipeline are stalled, and why.

A part (``lane 0``, ``stored offsets``, ``partition maintenance``, ``schema registry``) is
*stalled* while its server refuses all of its work for a reason only an operator can fix (a
revoked privilege, a missing table or column), or, for the schema registry, while it does
not answer for a schema an event needs. A stalled part keeps its events uncommitted and tries
again on a capped backoff; this book is what the others read meanwhile: ``/readyz`` fails
with the reason, backpressure pauses the partitions that feed a stalled lane, and the
``weir_stalled`` gauge drives the alert. Nothing here does I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from processor.core import metrics
from processor.core.errors import describe

log = structlog.get_logger(__name__)


def lane_part(index: int) -> str:
    """The part name of writer lane ``index``."""
    return f"lane {index}"


@dataclass(frozen=True, slots=True)
class Stall:
    """Why one part is stalled, and since when (``time.time()``)."""

    error: str
    since: float


class Stalls:
    """The stalled parts of one process."""

    def __init__(self, exit_on_stall: bool, retry_max_s: float) -> None:
        self.exit_on_stall = exit_on_stall
        self.retry_max_s = retry_max_s
        self.parts: dict[str, Stall] = {}

    def enter(self, part: str, exc: BaseException) -> None:
        """``part`` met an error that stalls it; the first one of a stall is logged."""
        error = describe(exc)
        if part not in self.parts:
            metrics.STALLED.labels(part).set(1)
            metrics.STALLS.labels(part, type(exc).__name__).inc()
            log.error("stalled: its server refuses this work or does not answer; "
                      "events stay uncommitted and it is retried", part=part, error=error)
            self.parts[part] = Stall(error, time.time())
        elif self.parts[part].error != error:
            self.parts[part] = Stall(error, self.parts[part].since)

    def leave(self, part: str) -> None:
        """``part`` works again."""
        stall = self.parts.pop(part, None)
        if stall is not None:
            metrics.STALLED.labels(part).set(0)
            log.info("stall over; resumed", part=part,
                     stalled_s=round(time.time() - stall.since, 1))

    def lane_stalled(self, index: int) -> bool:
        """Is writer lane ``index`` stalled?"""
        return lane_part(index) in self.parts
