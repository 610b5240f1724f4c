"""Builds the observability side of one Weir process from the pipeline's parts."""

from __future__ import annotations

import time
from collections.abc import Coroutine, Sequence
from typing import Any

import asyncpg

from processor import metrics
from processor.batch.buffer import LaneBuffer
from processor.connections import postgres_client
from processor.observe.health import Check, LoopHeartbeat, ReadinessProbe, evaluate
from processor.observe.poller import LagPoller
from processor.observe.server import PROBE_TIMEOUT_S, ObserveServer
from processor.settings import Settings
from processor.sink.breaker import CircuitBreaker, State
from processor.sink.writer import BatchWriter
from processor.source.consumer import KafkaSource
from processor.source.progress import ProgressBook

# A lane commit this recent proves PostgreSQL answers without asking it again.
RECENT_COMMIT_S = 10.0
# Inside the probe's own budget (PROBE_TIMEOUT_S), so the probe answers, not the guard.
PROBE_QUERY_S = PROBE_TIMEOUT_S / 2


class Observability:
    """HTTP endpoints, loop heartbeat and lag poller of one process."""

    def __init__(self, settings: Settings, source: KafkaSource, writer: BatchWriter,
                 pool: asyncpg.Pool, book: ProgressBook, buffers: Sequence[LaneBuffer],
                 breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._settings = settings
        self._source = source
        self._writer = writer
        self._pool = pool
        self._book = book
        self.heartbeat = LoopHeartbeat()
        self.probes: dict[str, ReadinessProbe] = {"kafka": self._kafka,
                                                  "postgres": self._postgres,
                                                  "circuit": self._circuit}
        self.poller = LagPoller(source.consumer, book, buffers, pool,
                                settings.metrics.lag_interval_s, self.ready)
        m = settings.metrics
        self.server = ObserveServer(m.host, m.port, self.heartbeat, self.probes,
                                    self.status) if m.enabled else None

    def status(self) -> dict[str, Any]:
        """The status page's data: lag per partition and the totals."""
        paused = self._paused()
        latest = sorted(self.poller.latest.items())
        parts = [
            {"topic": t, "partition": p, "lag": lag, "lag_seconds": round(seconds, 3),
             "paused": (t, p) in paused}
            for (t, p), (lag, seconds) in latest
        ]
        return {
            "ready": self.poller.ready,
            "time": time.time(),
            "partitions": parts,
            "totals": {
                "lag": sum(lag for _, (lag, _) in latest),
                "max_lag_seconds": round(max((s for _, (_, s) in latest), default=0.0), 3),
                "written_per_s": round(self.poller.written_per_s, 1),
                "dead_letters": int(metrics.total(metrics.EVENTS_DEAD_LETTERED)),
                "partitions": len(self._book.owned()),
                "paused": len(paused),
            },
        }

    def _paused(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._source.consumer.paused()}

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """The coroutines to run as owned tasks for the life of the pipeline."""
        return [self.heartbeat.run(), self.poller.run()]

    async def ready(self) -> bool:
        """The same answer ``/readyz`` gives."""
        ready, _ = await evaluate(self.probes, PROBE_TIMEOUT_S)
        return ready

    async def _kafka(self) -> Check:
        owned = self._book.owned()
        return Check(self._source.joined, {
            "group_joined": self._source.joined,
            "partitions": len(owned),
            **({} if self._source.joined else {"error": "not yet in the consumer group"}),
        })

    async def _circuit(self) -> Check:
        state = self._breaker.state
        detail = {"state": state.name.lower()}
        if state is State.OPEN:
            detail["error"] = "PostgreSQL writes keep failing; the breaker is probing"
        return Check(state is not State.OPEN, detail)

    async def _postgres(self) -> Check:
        since = time.monotonic() - self._writer.last_commit
        if since < RECENT_COMMIT_S:
            return Check(True, {"last_commit_s_ago": round(since, 1)})
        # A connection of its own, closed without a server round trip: a probe cancelled on
        # a pooled connection would make the pool wait on the (unanswering) server to reset it.
        pg = self._settings.postgres
        args = {**postgres_client(pg), "timeout": PROBE_QUERY_S}
        conn = await asyncpg.connect(pg.dsn, **args)
        try:
            await conn.fetchval("SELECT 1", timeout=PROBE_QUERY_S)
        finally:
            conn.terminate()
        return Check(True, {"probe": "SELECT 1"})
