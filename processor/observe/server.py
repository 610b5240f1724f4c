"""The HTTP port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for orchestrators.

aiohttp on the same event loop as the pipeline (not a thread): a liveness answer then
proves the loop the pipeline runs on is turning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from processor.observe.health import LoopHeartbeat, ReadinessProbe, evaluate

log = structlog.get_logger(__name__)
PROBE_TIMEOUT_S = 2.0
STATUS_HTML = (resources.files("processor.observe") / "status.html").read_text()


class ObserveServer:
    """Serves the observability endpoints until stopped."""

    def __init__(self, host: str, port: int, heartbeat: LoopHeartbeat,
                 probes: Mapping[str, ReadinessProbe],
                 status: Callable[[], dict[str, Any]]) -> None:
        self._status = status
        self._host = host
        self._port = port
        self._heartbeat = heartbeat
        self._probes = probes
        self._started = time.monotonic()
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/status", self.status_page)
        app.router.add_get("/status.json", self.status_json)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        """Bind the port (fails loudly if it is taken)."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("http endpoints up", host=self._host, port=self._port,
                 paths=["/metrics", "/healthz", "/readyz", "/status"])

    async def stop(self) -> None:
        """Close the port."""
        await self._runner.cleanup()

    async def metrics(self, _: web.Request) -> web.Response:
        """Prometheus exposition format."""
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _: web.Request) -> web.Response:
        """Alive: the loop answered. Includes the loop's heartbeat delay."""
        return web.json_response({
            "status": "ok",
            "loop_lag_s": round(self._heartbeat.lag_s, 3),
            "uptime_s": round(time.monotonic() - self._started, 1),
        })

    async def status_page(self, _: web.Request) -> web.Response:
        """The live status page: plain HTML and a little JavaScript polling /status.json."""
        return web.Response(text=STATUS_HTML, content_type="text/html")

    async def status_json(self, _: web.Request) -> web.Response:
        """What the status page shows, from the lag poller's last sample."""
        return web.json_response(self._status())

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready: 200 with every check, or 503 naming the ones that failed."""
        ready, checks = await evaluate(self._probes, PROBE_TIMEOUT_S)
        return web.json_response({"ready": ready, "checks": checks},
                                 status=200 if ready else 503)
