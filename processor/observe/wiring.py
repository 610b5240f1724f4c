"""Builds the observability side of one Weir process from the pipeline's parts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import asyncpg
import structlog

from processor.batch.buffer import LaneBuffer
from processor.core import metrics
from processor.core.connections import postgres_client
from processor.core.errors import describe
from processor.core.progress import ProgressBook
from processor.core.settings import Settings
from processor.core.stalls import Stalls
from processor.core.tasks import pause
from processor.observe.health import Check, LoopHeartbeat, ReadinessProbe, evaluate
from processor.observe.poller import LagPoller
from processor.observe.server import PROBE_TIMEOUT_S
from processor.observe.status import status_document
from processor.sink.breaker import CircuitBreaker, State
from processor.sink.writer import BatchWriter
from processor.source.consumer import KafkaSource

log = structlog.get_logger(__name__)

# A lane commit this recent proves PostgreSQL answers without asking it again.
RECENT_COMMIT_S = 10.0
# Inside the probe's own budget (PROBE_TIMEOUT_S), so the probe answers, not the guard.
PROBE_QUERY_S = PROBE_TIMEOUT_S / 2
# A failed observability task starts again after this long: it never stops the pipeline.
RESTART_S = 5.0


async def keep_running(run: Callable[[], Awaitable[None]], name: str,
                       restart_s: float = RESTART_S) -> None:
    """Run ``run`` until cancelled, starting it again whenever it fails.

    Metrics, lag and the heartbeat report on the pipeline; a bug or an outage in them must
    not stop it (a task group would cancel every stage when one of its tasks fails).
    """
    while True:
        try:
            await run()
        except Exception as exc:  # noqa: BLE001 - any failure here: log, restart, go on
            log.error("observability task failed; restarting it",  # noqa: TRY400
                      task=name, error=describe(exc), restart_in_s=restart_s)
        await pause(restart_s)


class Observability:
    """Readiness probes, status, loop heartbeat and lag poller of one running pipeline."""

    def __init__(self, settings: Settings, source: KafkaSource, writer: BatchWriter,
                 pool: asyncpg.Pool, book: ProgressBook, buffers: Sequence[LaneBuffer],
                 breaker: CircuitBreaker, stalls: Stalls, heartbeat: LoopHeartbeat) -> None:
        self._breaker = breaker
        self._stalls = stalls
        self._settings = settings
        self._source = source
        self._writer = writer
        self._pool = pool
        self._book = book
        self.heartbeat = heartbeat
        self.probes: dict[str, ReadinessProbe] = {"kafka": self._kafka,
                                                  "postgres": self._postgres,
                                                  "circuit": self._circuit,
                                                  "stalls": self._stalled}
        self.poller = LagPoller(source.consumer, book, buffers, pool,
                                settings.metrics.lag_interval_s, self.ready)

    def status(self) -> dict[str, Any]:
        """The status page's data: lag per partition and the totals."""
        paused = self._paused()
        latest = sorted(self.poller.latest.items())
        parts = [
            {"topic": t, "partition": p, "lag": lag, "lag_seconds": round(seconds, 3),
             "paused": (t, p) in paused}
            for (t, p), (lag, seconds) in latest
        ]
        return status_document(
            self.poller.ready, parts, lag=sum(lag for _, (lag, _) in latest),
            max_lag_seconds=max((s for _, (_, s) in latest), default=0.0),
            written_per_s=self.poller.written_per_s,
            dead_letters=int(metrics.total(metrics.EVENTS_DEAD_LETTERED)),
            owned=len(self._book.owned()), paused=len(paused), mirrors=mirrors())

    def _paused(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._source.consumer.paused()}

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """The coroutines to run as owned tasks for the life of the pipeline."""
        return [keep_running(self.heartbeat.run, "heartbeat"),
                keep_running(self.poller.run, "lag poller")]

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
            detail["error"] = ("PostgreSQL writes keep failing; the breaker is probing: "
                               + self._breaker.last_error)
        return Check(state is not State.OPEN, detail)

    async def _stalled(self) -> Check:
        parts = self._stalls.parts
        if not parts:
            return Check(True, {"stalled": []})
        return Check(False, {
            "stalled": sorted(parts),
            "error": "; ".join(f"{part} stalled for {time.time() - st.since:.0f}s: {st.error}"
                               for part, st in sorted(parts.items())),
        })

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


def mirrors() -> list[dict[str, Any]]:
    """The status page's mirrors: each that has written, its lag behind its source and the
    changes (and, of those, deletes) it wrote."""
    lag = metrics.by_label(metrics.MIRROR_LAG, "event_type")
    written = metrics.by_label(metrics.EVENTS_WRITTEN, "event_type")
    deletes = metrics.by_label(metrics.DELETES_WRITTEN, "event_type")
    return [{"event_type": name, "lag_seconds": round(seconds, 3),
             "changes": written.get(name, 0), "deletes": deletes.get(name, 0)}
            for name, seconds in sorted(lag.items())]
