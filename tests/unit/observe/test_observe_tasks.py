"""An observability task that fails is started again; it never stops the pipeline."""

from __future__ import annotations

import asyncio
import contextlib

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


class _Pool:
    def get_size(self) -> int:
        return 1

    def get_idle_size(self) -> int:
        return 1


class _LosesACancel:
    """A consumer whose end_offsets swallows a cancellation, as Python 3.11's wait_for
    (which aiokafka awaits with) can when the cancel meets the answer."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def end_offsets(self, tps: list[object]) -> dict[object, int]:
        self.asked.set()
        # The answer came at the same moment as the cancellation, which is lost.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return {}


async def test_the_lag_poller_ends_when_cancelled_even_if_a_call_swallowed_it() -> None:
    from processor.core.progress import ProgressBook
    from processor.observe.poller import LagPoller

    book = ProgressBook()
    book.assign(("orders", 0), 0)
    consumer = _LosesACancel()

    async def ready() -> bool:
        return True

    poller = LagPoller(consumer, book, [], _Pool(), 0.01, ready)  # type: ignore[arg-type]
    task = asyncio.ensure_future(keep_running(poller.run, "lag poller", restart_s=0.01))
    await asyncio.wait_for(consumer.asked.wait(), 5)
    task.cancel()
    # Without the check at the loop's pause the task runs on, marked cancelling, and the
    # pipeline's task group waits for it at shutdown forever.
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task}
    assert task.cancelled()
