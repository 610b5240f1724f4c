"""The supervisor's HTTP port: the endpoints of :mod:`processor.observe.server`, for N workers.

Each worker serves its own endpoints on a loopback port; this server asks them and answers
for all: ``/metrics`` summed (:mod:`processor.observe.merge`), ``/readyz`` ready only when
every worker is, ``/status`` with every worker's partitions. ``/healthz`` is answered by the
supervisor's own loop, with how many workers are alive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from processor.observe.health import LoopHeartbeat
from processor.observe.merge import MetricsMerger, Scrape, failing_checks, merge_status
from processor.observe.server import PROBE_TIMEOUT_S, ObserveServer

# A worker's /readyz runs its probes one after another, each within PROBE_TIMEOUT_S.
READYZ_TIMEOUT_S = 2 * PROBE_TIMEOUT_S


class Worker(Protocol):
    """What the server reads of a supervised worker."""

    index: int
    port: int | None
    restarts: int
    restart_at: float | None

    @property
    def alive(self) -> bool:
        """A process runs for this worker."""

    @property
    def pid(self) -> int | None:
        """Its current (or last) process id."""


class FleetServer(ObserveServer):
    """Serves the endpoints of all workers from the supervisor's port."""

    def __init__(self, host: str, port: int, heartbeat: LoopHeartbeat,
                 workers: Sequence[Worker]) -> None:
        super().__init__(host, port, heartbeat, {}, dict)
        self._workers = workers
        self._merger = MetricsMerger()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Bind the port; open the client that asks the workers."""
        self._session = aiohttp.ClientSession()
        await super().start()

    async def stop(self) -> None:
        """Close the port and the client."""
        await super().stop()
        if self._session is not None:
            await self._session.close()

    async def metrics(self, _: web.Request) -> web.Response:
        """Every worker's metrics: counters and histograms summed, gauges per worker."""
        answers = await self._ask("/metrics", PROBE_TIMEOUT_S)
        scrapes = [Scrape(w.index, pid, body.decode()) for w, (pid, _, body)
                   in zip(self._workers, answers, strict=True) if pid is not None]
        text = self._merger.merge(scrapes, self._own_metrics())
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _: web.Request) -> web.Response:
        """Alive: the supervisor's loop answered; with how many workers run."""
        return web.json_response({
            "status": "ok",
            "workers": len(self._workers),
            "workers_alive": sum(w.alive for w in self._workers),
            "loop_lag_s": round(self._heartbeat.lag_s, 3),
            "uptime_s": round(time.monotonic() - self._started, 1),
        })

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready only when every worker is; 503 naming each worker that is not, and why."""
        answers = await self._ask("/readyz", READYZ_TIMEOUT_S)
        workers: dict[str, Any] = {}
        errors = []
        for w, (pid, status, body) in zip(self._workers, answers, strict=True):
            if pid is None:
                why = self._down(w, status)
                workers[str(w.index)] = {"ok": False, "error": why}
                errors.append(f"worker {w.index}: {why}")
                continue
            answer = orjson.loads(body)
            ok = status == 200
            workers[str(w.index)] = {"ok": ok, "pid": pid, "checks": answer.get("checks", {})}
            if not ok:
                errors.append(f"worker {w.index}: {failing_checks(answer)}")
        answer_all: dict[str, Any] = {"ready": not errors, "workers": workers}
        if errors:
            answer_all["error"] = "; ".join(errors)
        return web.json_response(answer_all, status=503 if errors else 200)

    async def status_json(self, _: web.Request) -> web.Response:
        """Every worker's partitions and totals, as one status page."""
        answers = await self._ask("/status.json", PROBE_TIMEOUT_S)
        statuses = {w.index: orjson.loads(body) if pid is not None else None
                    for w, (pid, _, body) in zip(self._workers, answers, strict=True)}
        listing = [{"worker": w.index, "pid": w.pid, "alive": w.alive, "restarts": w.restarts,
                    "partitions": len((statuses[w.index] or {}).get("partitions", []))}
                   for w in self._workers]
        return web.json_response(merge_status(statuses, listing))

    def _down(self, worker: Worker, status: int) -> str:
        if not worker.alive:
            if worker.restart_at is None:
                return "not running"
            wait = max(0.0, worker.restart_at - time.monotonic())
            return f"not running (starting again in {wait:.0f}s)"
        return f"starting: its endpoints do not answer yet ({status or 'no answer'})"

    async def _ask(self, path: str, timeout_s: float) -> list[tuple[int | None, int, bytes]]:
        """(pid, HTTP status, body) from each worker; pid None when it gave no answer."""
        return list(await asyncio.gather(*(self._ask_one(w, path, timeout_s)
                                           for w in self._workers)))

    async def _ask_one(self, worker: Worker, path: str,
                       timeout_s: float) -> tuple[int | None, int, bytes]:
        pid = worker.pid
        if not worker.alive or worker.port is None or self._session is None:
            return None, 0, b""
        url = f"http://127.0.0.1:{worker.port}{path}"
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)
                                         ) as resp:
                body = await resp.read()
                if resp.status not in (200, 503):
                    return None, resp.status, body
                return pid, resp.status, body
        except (aiohttp.ClientError, TimeoutError):
            return None, 0, b""

    def _own_metrics(self) -> list[Metric]:
        alive = GaugeMetricFamily("weir_workers_alive",
                                  "Worker processes running (weir run --workers).")
        alive.add_metric([], sum(w.alive for w in self._workers))
        restarts = CounterMetricFamily("weir_worker_restarts",
                                     "Times each worker was started again after it died.",
                                     labels=["worker"])
        for w in self._workers:
            restarts.add_metric([str(w.index)], w.restarts)
        return [alive, restarts]
