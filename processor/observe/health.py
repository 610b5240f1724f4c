"""Liveness and readiness, as data: what each probe checks and why it says no.

Liveness (``/healthz``) is answered by a handler on the event loop itself, so an answer
proves the loop turns; the body adds how late the loop's own heartbeat is. Readiness
(``/readyz``) asks: has this process joined the consumer group, does PostgreSQL answer,
and is nothing stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processor.core.errors import describe
from processor.core.tasks import pause

HEARTBEAT_S = 1.0


@dataclass(slots=True)
class Check:
    """One readiness input: ok or not, and a reason a person can act on."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


class LoopHeartbeat:
    """A task that ticks every second; how late a tick is measures a blocked loop."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            self.last = time.monotonic()
            await pause(HEARTBEAT_S)

    @property
    def lag_s(self) -> float:
        """Seconds past the expected next tick (0 when the loop is responsive)."""
        return max(0.0, time.monotonic() - self.last - HEARTBEAT_S)


ReadinessProbe = Callable[[], Awaitable[Check]]


async def evaluate(
    probes: Mapping[str, ReadinessProbe], timeout_s: float
) -> tuple[bool, dict[str, Any]]:
    """Run every probe (each bounded by ``timeout_s``); ready only if all are ok."""
    results: dict[str, Any] = {}
    ready = True
    for name, probe in probes.items():
        try:
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow the
            # cancellation of the task that runs the probes (see processor.core.tasks.pause).
            async with asyncio.timeout(timeout_s):
                check = await probe()
        except TimeoutError:
            check = Check(False, {"error": f"no answer within {timeout_s}s"})
        except Exception as exc:  # noqa: BLE001 - a probe's failure is its answer
            check = Check(False, {"error": describe(exc)})
        results[name] = {"ok": check.ok, **check.detail}
        ready = ready and check.ok
    return ready, results
