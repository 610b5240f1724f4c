"""Waiting on work that may never end: bounded, unless_stopped and pause."""

from __future__ import annotations

import asyncio

import pytest

from processor.core.tasks import Stopped, bounded, pause, unless_stopped


async def test_unless_stopped_gives_the_result_or_stops_the_work() -> None:
    stopping = asyncio.Event()

    async def answer() -> int:
        return 42

    assert await unless_stopped(answer(), stopping) == 42
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.01, stopping.set)
    with pytest.raises(Stopped):
        await unless_stopped(forever(), stopping)
    assert cancelled.is_set()  # the work was cancelled, and waited for


async def test_unless_stopped_raises_the_works_own_error() -> None:
    async def fails() -> None:
        raise ValueError("its own")

    with pytest.raises(ValueError, match="its own"):
        await unless_stopped(fails(), asyncio.Event())


async def test_bounded_says_whether_the_work_ended_in_time() -> None:
    assert await bounded(asyncio.sleep(0), 1.0)
    assert not await bounded(asyncio.sleep(3600), 0.01)

    async def fails() -> None:
        raise RuntimeError("ended badly")

    with pytest.raises(RuntimeError, match="ended badly"):
        await bounded(fails(), 1.0)


async def test_pause_ends_a_loop_whose_task_is_being_cancelled() -> None:
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await pause(0.001)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a library call might; the task is still cancelling

    task = asyncio.ensure_future(loop())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert swallowed == 1  # the next pause raised at once instead of sleeping on
