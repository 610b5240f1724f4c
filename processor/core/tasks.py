"""Waiting on work that may never end: a time bound, or a stop asked for meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def pause(seconds: float) -> None:
    """``asyncio.sleep`` for the loop of an owned task that must end when cancelled.

    A library call can swallow a cancellation (Python 3.11's ``asyncio.wait_for`` loses one
    that arrives as its inner call completes; aiokafka waits with it), and a ``while True``
    loop around it then runs on with its task marked *cancelling*, and whoever owns the
    task (a task group at shutdown) waits forever. A task that is being cancelled ends
    here instead.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)


class Stopped(Exception):
    """A stop was asked for while :func:`unless_stopped` waited."""


async def bounded(work: Coroutine[Any, Any, Any], seconds: float) -> bool:
    """Run ``work`` for at most ``seconds``; False (and ``work`` cancelled) if it did not end.

    ``asyncio.wait``, not ``wait_for``: past the time the caller goes on at once instead of
    waiting for the cancellation to finish (a cancelled query's ROLLBACK may never end).
    Its error, if it ended with one, is raised.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        return False
    task.result()
    return True


def _retrieve(task: asyncio.Task[Any]) -> None:
    # An abandoned task's outcome is of no interest, but must be retrieved to stay quiet.
    if not task.cancelled():
        task.exception()


async def unless_stopped(work: Coroutine[Any, Any, T], stopping: asyncio.Event) -> T:
    """``work``'s result; :class:`Stopped` if ``stopping`` was set first (``work`` is
    cancelled)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise Stopped
    return task.result()
