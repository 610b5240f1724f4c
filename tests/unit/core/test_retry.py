"""retry_transient: transient faults are retried; a task asked to stop is not."""

from __future__ import annotations

import asyncio

import pytest

from processor.core.retry import Backoff, retry_transient

QUICK = Backoff(base_s=0.001, cap_s=0.001)


async def test_transient_faults_are_retried_until_it_works() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("reset")
        return "done"

    assert await retry_transient(flaky, "flaky", QUICK) == "done"
    assert calls == 3


async def test_a_cancelled_task_is_not_retried_when_an_error_replaces_the_cancellation() -> None:
    calls = 0
    started = asyncio.Event()

    async def write() -> None:
        nonlocal calls
        calls += 1
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            # What a ROLLBACK on a terminated connection does in a transaction's __aexit__.
            raise ConnectionResetError("connection is closed") from None

    task = asyncio.create_task(retry_transient(write, "write", QUICK))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
