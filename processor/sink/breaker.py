"""A circuit breaker around PostgreSQL writes: a dead database is probed, not hammered.

closed   every call goes through; consecutive transient failures are counted.
open     after ``failures`` of them in a row: calls wait (the lanes hold their batches,
         the buffers fill, partitions pause) for ``open_s``.
half-open then one call goes through as a probe; success closes the circuit, a transient
         failure opens it again. Everyone else waits for the probe's outcome.

A permanent error (a row the table refuses) is an answer from the database, so it counts
as a success here: the breaker is about reachability, not about bad data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import TypeVar

import structlog

from processor import metrics
from processor.classify import is_transient

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
        self._changed = asyncio.Condition()
        self.state = State.CLOSED
        metrics.CIRCUIT_STATE.labels(name).set(State.CLOSED)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` when the circuit lets it; record how it went."""
        await self._admit()
        try:
            result = await operation()
        except Exception as exc:
            await self._record(ok=not is_transient(exc))
            raise
        await self._record(ok=True)
        return result

    async def _admit(self) -> None:
        async with self._changed:
            while True:
                if self.state is State.CLOSED:
                    return
                if self.state is State.OPEN:
                    remaining = self._opened_at + self._open_s - time.monotonic()
                    if remaining <= 0:
                        self._set(State.HALF_OPEN)
                        return  # this caller is the probe
                    # Wake at the end of the open period, or earlier if the state changes.
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except TimeoutError:
                        continue
                else:
                    await self._changed.wait()  # a probe is out: wait for its outcome

    async def _record(self, ok: bool) -> None:
        async with self._changed:
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
            self._changed.notify_all()

    def _set(self, state: State) -> None:
        self.state = state
        metrics.CIRCUIT_STATE.labels(self.name).set(state)
        log.warning("circuit " + state.name.lower().replace("_", "-"), circuit=self.name,
                    consecutive_failures=self._failures)
