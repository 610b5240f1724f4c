"""An observability task that fails is started again; it never stops the pipeline."""

from __future__ import annotations

import asyncio

import pytest

from processor.observe.wiring import keep_running


async def test_a_failing_observability_task_is_restarted_not_raised() -> None:
    calls = 0
    third = asyncio.Event()

    async def poll() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("lag sample failed in a way nobody foresaw")
        third.set()
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(keep_running(poll, "lag poller", restart_s=0.01))
    await asyncio.wait_for(third.wait(), 5)
    assert calls == 3
    assert not task.done()  # the failures stayed inside it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
