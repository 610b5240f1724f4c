"""The source stage's loop: fetch, hand each fetch to the decode queue, until stopped.

A failed fetch never ends the loop unless its verdict is fatal: a broker away or a
coordinator moving is waited out with the one retry policy (:mod:`processor.core.retry`, every
verdict but fatal), and the group membership holds meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from processor.core.errors import describe
from processor.core.retry import Backoff, retry_transient
from processor.core.tasks import Stopped, unless_stopped
from processor.core.verdict import verdict
from processor.source.consumer import Fetched, KafkaSource

log = structlog.get_logger(__name__)


class FetchLoop:
    """Feeds ``queue`` from ``source`` until ``stopping`` is set, then puts the end mark."""

    def __init__(self, source: KafkaSource, queue: asyncio.Queue[Fetched | None],
                 stopping: asyncio.Event, *, pace: Callable[[], None],
                 idle: Callable[[], bool], request_stop: Callable[[str], None]) -> None:
        self._source = source
        self._queue = queue
        self._stopping = stopping
        self._pace = pace  # backpressure: resumes partitions whose lanes drained
        self._idle = idle  # nothing queued, buffered or being written
        self._request_stop = request_stop
        self.consumed = 0  # records handed to the decode stage (a dropped fetch is not)

    async def run(self, until_caught_up: bool = False) -> None:
        """Fetch until stopped (or, with ``until_caught_up``, until all is written)."""
        while not self._stopping.is_set():
            fetched = await retry_transient(
                lambda: self._fetch(until_caught_up), "Kafka fetch", Backoff(0.2, 5.0),
                operation="fetch", persist=True, report=_report)
            if fetched:
                await self._put(fetched)
        await self._queue.put(None)

    async def _fetch(self, until_caught_up: bool) -> Fetched:
        """One fetch (nothing once stopping: a retry ends there)."""
        if self._stopping.is_set():
            return []
        self._pace()
        fetched = await self._source.fetch()
        if not fetched and until_caught_up and self._idle() \
                and await self._source.caught_up():
            self._request_stop("caught up")
        return fetched

    async def _put(self, fetched: Fetched) -> None:
        # Wait for room, but give up the wait when asked to stop: the records stay uncommitted.
        try:
            await unless_stopped(self._queue.put(fetched), self._stopping)
        except Stopped:
            return
        self.consumed += sum(len(records) for _, records in fetched)


def _report(exc: Exception, attempt: int, wait: float) -> None:
    log.warning("fetch failed; trying again", error=describe(exc), attempt=attempt,
                verdict=verdict(exc).value, retry_in_s=round(wait, 2))
