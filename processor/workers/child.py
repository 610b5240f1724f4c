"""The worker's side of ``weir run --workers``: a normal pipeline that stops with its parent.

A supervisor killed outright (SIGKILL, an OOM kill) cannot forward a stop; its workers
would run on unsupervised, their endpoints unreachable. Each worker watches its parent
and drains as on SIGTERM when the parent is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import structlog

from processor.runtime.app import Pipeline

log = structlog.get_logger(__name__)
PARENT_CHECK_S = 1.0


def bind_worker(worker_id: int) -> None:
    """Every log line of this process carries ``worker``."""
    structlog.contextvars.bind_contextvars(worker=worker_id)


async def run_worker(pipeline: Pipeline, until_caught_up: bool) -> int:
    """``pipeline.run``, stopped when the supervisor that started it goes away."""
    watch = asyncio.create_task(_watch_parent(pipeline, os.getppid()), name="parent-watch")
    try:
        return await pipeline.run(until_caught_up=until_caught_up)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


async def _watch_parent(pipeline: Pipeline, parent: int) -> None:
    # Polled: nothing signals a process that its parent died, short of prctl, which the
    # standard library does not offer.
    while os.getppid() == parent:  # noqa: ASYNC110 - no event exists to wait on
        await asyncio.sleep(PARENT_CHECK_S)
    log.error("the supervisor is gone; stopping", parent_pid=parent)
    pipeline.request_stop("supervisor gone")
