"""A circuit breaker around PostgreSQL writes: a dead database is probed, not hammered.

closed   every call goes through; consecutive transient failures are counted.
open     after ``failures`` of them in a row: calls wait (the lanes hold their batches,
         the buffers fill, partitions pause) for ``open_s``.
half-open then one call goes through as a probe; success closes the circuit, a transient
         failure opens it again. Everyone else waits for the probe's outcome.

Only a *retry* verdict counts as a failure. Any other error (a row the table refuses, a
revoked privilege) is an answer from the database, so it counts as a success here: the
breaker is about reachability, not about bad data or grants. A probe that is cancelled
(shutdown, a revoked partition) says nothing either way: the circuit goes back to open with
its period over, so the next caller probes at once instead of everyone waiting on a probe
that will never report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import TypeVar

import structlog

from processor.core import metrics
from processor.core.errors import describe
from processor.core.verdict import Verdict, verdict

T = TypeVar("T")
log = structlog.get_logger(__name__)


class State(IntEnum):
    """Exported as the value of ``weir_circuit_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """One breaker, shared by every lane writing to the same database."""

    def __init__(self, name: str, failures: int, open_s: float) -> None:
        self.name = name
        self._threshold = failures
        self._open_s = open_s
        self._failures = 0
        self._opened_at = 0.0
        # Set on every state change: waiters wake and look again. One event loop, no await
        # between reading and changing the state, so no lock is needed.
        self._wake = asyncio.Event()
        self.state = State.CLOSED
        self.last_error = ""  # the last transient failure, for /readyz
        metrics.CIRCUIT_STATE.labels(name).set(State.CLOSED)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` when the circuit lets it; record how it went."""
        probe = await self._admit()
        try:
            result = await operation()
        except Exception as exc:
            transient = verdict(exc) is Verdict.RETRY
            if transient:
                self.last_error = describe(exc)
            self._record(ok=not transient)
            raise
        except BaseException:
            if probe:
                self._reopen_for_next_probe()
            raise
        self._record(ok=True)
        return result

    def _reopen_for_next_probe(self) -> None:
        # No await: this runs while the caller is being cancelled.
        if self.state is State.HALF_OPEN:
            self._opened_at = time.monotonic() - self._open_s
            self._set(State.OPEN)
        self._wake.set()

    async def _admit(self) -> bool:
        """Wait until a call may go through; True if this caller is the half-open probe."""
        while True:
            if self.state is State.CLOSED:
                return False
            if self.state is State.OPEN:
                remaining = self._opened_at + self._open_s - time.monotonic()
                if remaining <= 0:
                    self._set(State.HALF_OPEN)
                    return True
            else:
                remaining = self._open_s  # a probe is out: wait for its outcome, or look again
            # Wake at the end of the open period, or earlier if the state changes.
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):  # not wait_for: see tasks.pause
                    await self._wake.wait()
            except TimeoutError:
                continue

    def _record(self, ok: bool) -> None:
        if ok:
            self._failures = 0
            if self.state is not State.CLOSED:
                self._set(State.CLOSED)
        else:
            self._failures += 1
            if self.state is State.HALF_OPEN or self._failures >= self._threshold:
                self._opened_at = time.monotonic()
                if self.state is not State.OPEN:
                    self._set(State.OPEN)
        self._wake.set()

    def _set(self, state: State) -> None:
        self.state = state
        metrics.CIRCUIT_STATE.labels(self.name).set(state)
        log.warning("circuit " + state.name.lower().replace("_", "-"), circuit=self.name,
                    consecutive_failures=self._failures)
