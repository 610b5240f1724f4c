"""The supervisor of ``weir run --workers``: restarts with backoff, giving up, stopping.

Fake worker processes (no servers): each exits with a scripted code, or runs until signalled.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from pathlib import Path

import pytest

from processor.core.settings import MetricsSettings, Settings, WorkersSettings, load_settings
from processor.workers.budget import BudgetExceeded, ServerLimit, judge
from processor.workers.policy import RestartPolicy, final_exit_code
from processor.workers.supervisor import Child, Supervisor, WorkerSlot


class FakeChild:
    """Exits with ``code`` after ``after_s``, or (``code`` None) when signalled."""

    _pids = iter(range(1000, 10_000))

    def __init__(self, code: int | None, after_s: float = 0.0, on_term: int = 0) -> None:
        self.pid = next(self._pids)
        self._on_term = on_term
        self.returncode: int | None = None
        self.signals: list[int] = []
        self._code = code
        self._after_s = after_s
        self._ended = asyncio.Event()

    async def wait(self) -> int:
        if self._code is not None:
            await asyncio.sleep(self._after_s)
            self.returncode = self._code
        else:
            await self._ended.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if self._code is None:
            self.returncode = self._on_term if sig == signal.SIGTERM else -sig
            self._ended.set()


class Script:
    """Spawns, per worker, the next fake of its script (the last one repeats)."""

    def __init__(self, scripts: dict[int, list[tuple[int | None, float]]],
                 on_term: int = 0) -> None:
        self.scripts = scripts
        self.on_term = on_term
        self.spawned: dict[int, list[tuple[float, FakeChild]]] = {i: [] for i in scripts}

    async def __call__(self, slot: WorkerSlot) -> Child:
        script = self.scripts[slot.index]
        code, after = script.pop(0) if len(script) > 1 else script[0]
        child = FakeChild(code, after, self.on_term)
        self.spawned[slot.index].append((time.monotonic(), child))
        return child


def settings(example_config: Path, **workers: float) -> Settings:
    base = load_settings(example_config)
    policy = {"restart_backoff_s": 0.05, "restart_backoff_max_s": 0.2, "max_restarts": 3,
              "restart_window_s": 60.0, **workers}
    return base.model_copy(update={"workers": WorkersSettings(**policy),
                                   "metrics": MetricsSettings(enabled=False)})


def test_backoff_doubles_per_worker_up_to_the_cap_then_gives_up() -> None:
    policy = RestartPolicy(WorkersSettings(restart_backoff_s=1, restart_backoff_max_s=4,
                                           max_restarts=5, restart_window_s=100))
    assert [policy.after_death(0, t) for t in (0, 1, 2, 3)] == [1, 2, 4, 4]
    assert policy.after_death(1, 4) == 1  # another worker's deaths do not slow this one
    assert policy.after_death(1, 5) is None  # but all restarts count towards giving up
    # Outside the window, old deaths are forgotten: back to the first delay.
    assert policy.after_death(0, 500) == 1


def test_exit_codes() -> None:
    assert final_exit_code([0, 0, None], abandoned=False) == 0
    assert final_exit_code([0, 3], abandoned=False) == 3
    assert final_exit_code([0, 1], abandoned=False) == 1
    assert final_exit_code([0, -9], abandoned=False) == 1
    assert final_exit_code([0, 0], abandoned=True) == 3


async def test_a_dying_worker_is_restarted_with_growing_delays(example_config: Path) -> None:
    # Worker 1 dies three times (SIGKILL, exit 1, SIGKILL), then stays up.
    script = Script({0: [(None, 0)], 1: [(-9, 0.01), (1, 0.01), (-9, 0.01), (None, 0)]})
    sup = Supervisor(settings(example_config, max_restarts=5), 2, script)
    serving = asyncio.create_task(sup.serve())
    while len(script.spawned[1]) < 4:  # noqa: ASYNC110 - polling a fake is simplest
        await asyncio.sleep(0.01)
    starts = [t for t, _ in script.spawned[1]]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 0.05, 0.1, 0.2 s of backoff (plus the 0.01 s each fake lived).
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1
    assert gaps[2] >= 0.2
    assert len(script.spawned[0]) == 1  # the healthy worker was left alone
    sup.request_stop("test")
    assert await asyncio.wait_for(serving, 5) == 0
    assert sup.slots[1].restarts == 3
    for spawned in script.spawned.values():
        assert spawned[-1][1].signals == [signal.SIGTERM]


async def test_workers_that_keep_dying_make_the_parent_give_up(example_config: Path) -> None:
    script = Script({0: [(None, 0)], 1: [(1, 0.01)]})
    sup = Supervisor(settings(example_config, max_restarts=3), 2, script)
    code = await asyncio.wait_for(sup.serve(), 10)
    assert code == 1
    assert len(script.spawned[1]) == 4  # the first start and three restarts
    assert sup.gave_up is not None
    assert "workers.max_restarts" in sup.gave_up
    # The healthy worker was asked to drain.
    assert script.spawned[0][0][1].signals == [signal.SIGTERM]


async def test_a_refused_worker_stops_everything_with_exit_2(example_config: Path) -> None:
    script = Script({0: [(None, 0)], 1: [(2, 0.01)]})
    sup = Supervisor(settings(example_config), 2, script)
    assert await asyncio.wait_for(sup.serve(), 10) == 2
    assert len(script.spawned[1]) == 1  # never restarted


async def test_until_caught_up_ends_when_every_worker_exited_0(example_config: Path) -> None:
    script = Script({0: [(0, 0.01)], 1: [(0, 0.05)]})
    sup = Supervisor(settings(example_config), 2, script, until_caught_up=True)
    assert await asyncio.wait_for(sup.serve(), 10) == 0
    assert all(len(s) == 1 for s in script.spawned.values())


async def test_a_stop_during_backoff_is_clean(example_config: Path) -> None:
    script = Script({0: [(None, 0)], 1: [(-9, 0.01)]})
    sup = Supervisor(settings(example_config, restart_backoff_s=30, restart_backoff_max_s=30),
                     2, script)
    serving = asyncio.create_task(sup.serve())
    while sup.slots[1].restart_at is None:  # noqa: ASYNC110 - polling a fake is simplest
        await asyncio.sleep(0.01)
    sup.request_stop("test")
    assert await asyncio.wait_for(serving, 5) == 0


def test_connection_budget(example_config: Path) -> None:
    s = load_settings(example_config)
    pool = s.postgres.pool_size
    judge(s, 2, ServerLimit(100, 3, 0))  # fits
    with pytest.raises(BudgetExceeded, match=r"--workers 20 .*postgres\.pool_size"):
        judge(s, 20, ServerLimit(10 * (pool + 1), 3, 0))


async def test_a_worker_killed_by_the_forwarded_sigterm_counts_as_clean(
        example_config: Path) -> None:
    # Still importing when the stop came: the default action of SIGTERM ended it.
    script = Script({0: [(None, 0)], 1: [(None, 0)]}, on_term=-signal.SIGTERM)
    sup = Supervisor(settings(example_config), 2, script)
    serving = asyncio.create_task(sup.serve())
    while not all(script.spawned.values()):  # noqa: ASYNC110 - polling a fake is simplest
        await asyncio.sleep(0.01)
    sup.request_stop("test")
    assert await asyncio.wait_for(serving, 5) == 0
