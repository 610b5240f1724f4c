"""``weir run --workers N``: N members of the consumer group from one command.

Each worker is a child process running a normal ``weir run`` (one event loop, one core)
with a worker id, so the exactly-once argument is the one of N replicas: the group
coordinator splits the partitions, each worker commits its own. The supervisor only
starts, watches, restarts and stops them, and serves one set of HTTP endpoints for all
(:mod:`processor.observe.fleet`).

Stopping: SIGTERM or SIGINT to the parent is forwarded as SIGTERM to every worker; each
drains as ``weir run`` does. Past ``pipeline.shutdown_timeout_s`` plus a grace period the
parent kills what is left (the stored offsets make the next owner replay it) and exits 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from processor.core.settings import Settings
from processor.observe.fleet import FleetServer
from processor.observe.health import LoopHeartbeat
from processor.workers.budget import check_budget
from processor.workers.policy import EXIT_OK, EXIT_REFUSED, RestartPolicy, final_exit_code

log = structlog.get_logger(__name__)

# A worker's own deadline passes first; this is for one that does not even manage that.
STOP_GRACE_S = 10.0
EXIT_GAVE_UP = 1


class Child(Protocol):
    """What the supervisor needs of a worker process (``asyncio.subprocess.Process``)."""

    @property
    def pid(self) -> int:
        """The process id."""

    @property
    def returncode(self) -> int | None:
        """None while it runs."""

    async def wait(self) -> int:
        """Its exit code (negative: the signal that ended it)."""

    def send_signal(self, sig: int) -> None:
        """Signal it."""


@dataclass
class WorkerSlot:
    """One worker: what runs in it now, and what it did."""

    index: int
    port: int | None = None  # its own HTTP endpoints on loopback, when metrics are on
    process: Child | None = None
    restarts: int = 0
    last_code: int | None = None
    restart_at: float | None = None  # monotonic time of a planned restart

    @property
    def alive(self) -> bool:
        """A process runs in this slot."""
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int | None:
        """The process id of the worker's current (or last) process."""
        return self.process.pid if self.process is not None else None


Spawn = Callable[[WorkerSlot], Awaitable[Child]]


def free_loopback_port() -> int:
    """A port nothing listens on now, for a worker's own endpoints."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_spawner(config: Path, settings: Settings, until_caught_up: bool) -> Spawn:
    """Start a worker as ``python -m processor run --worker-id I``, inheriting stdout."""

    async def spawn(slot: WorkerSlot) -> Child:
        args = ["-m", "processor", "run", "--config", str(config), "--worker-id",
                str(slot.index), *(["--until-caught-up"] if until_caught_up else [])]
        # The child reads the same file and the same WEIR_* overrides as the parent; only
        # its endpoints move to a loopback port of its own, which the parent aggregates.
        env = dict(os.environ)
        if settings.kafka.group_instance_id is not None:
            # Each worker is a member of its own: the id, then its index, stable across its
            # restarts.
            env["WEIR_KAFKA__GROUP_INSTANCE_ID"] = (
                f"{settings.kafka.group_instance_id}-{slot.index}")
        if settings.metrics.enabled:
            slot.port = free_loopback_port()
            env |= {"WEIR_METRICS__HOST": "127.0.0.1", "WEIR_METRICS__PORT": str(slot.port)}
        return await asyncio.create_subprocess_exec(sys.executable, *args, env=env)

    return spawn


class Supervisor:
    """Runs ``count`` workers until stopped, caught up, or dying too often."""

    def __init__(self, settings: Settings, count: int, spawn: Spawn,
                 until_caught_up: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.slots = [WorkerSlot(i) for i in range(count)]
        self.until_caught_up = until_caught_up
        self.stopping = asyncio.Event()
        self.gave_up: str | None = None
        self.refused = False
        self.abandoned = False
        self._spawn = spawn
        self._clock = clock
        self._policy = RestartPolicy(settings.workers)
        self._heartbeat = LoopHeartbeat()

    def request_stop(self, reason: str) -> None:
        """Stop every worker: each drains and exits (signal handler, give-up)."""
        if not self.stopping.is_set():
            log.info("stopping workers", reason=reason,
                     alive=sum(slot.alive for slot in self.slots))
            self.stopping.set()
        for slot in self.slots:
            self._signal(slot, signal.SIGTERM)

    async def run(self) -> int:
        """Check the connection budget, run the workers, return the parent's exit code."""
        await check_budget(self.settings, len(self.slots))
        return await self.serve()

    async def serve(self) -> int:
        """Run the workers (and the HTTP port) until they have all ended; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        m = self.settings.metrics
        server = FleetServer(m.host, m.port, self._heartbeat, self.slots) if m.enabled else None
        try:
            if server is not None:
                await server.start()
            await self._watch()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if server is not None:
                await server.stop()
        return self.exit_code()

    def exit_code(self) -> int:
        """What the parent exits with, once every worker has ended."""
        if self.gave_up is not None:
            return EXIT_REFUSED if self.refused else EXIT_GAVE_UP
        return final_exit_code([slot.last_code for slot in self.slots], self.abandoned)

    async def _watch(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            keepers = [tasks.create_task(self._keep(slot), name=f"worker-{slot.index}")
                       for slot in self.slots]
            background = [tasks.create_task(self._heartbeat.run(), name="heartbeat"),
                          tasks.create_task(self._deadline(keepers), name="stop-deadline")]
            await asyncio.wait(keepers)
            for task in background:
                task.cancel()

    async def _keep(self, slot: WorkerSlot) -> None:
        """Run one worker until the supervisor stops, starting it again when it dies."""
        while not self.stopping.is_set():
            process = await self._spawn(slot)
            slot.process, slot.restart_at, slot.last_code = process, None, None
            log.info("worker started", worker=slot.index, pid=process.pid, port=slot.port,
                     restarts=slot.restarts)
            if self.stopping.is_set():  # a stop that came while it was being spawned
                self._signal(slot, signal.SIGTERM)
            code = await process.wait()
            if self.stopping.is_set() and code == -signal.SIGTERM:
                # Our SIGTERM reached it before its handler was installed (still importing)
                # or after it was removed (drained, exiting): nothing was left uncommitted.
                code = EXIT_OK
            slot.last_code = code
            if self.stopping.is_set() or (code == EXIT_OK and self.until_caught_up):
                log.info("worker exited", worker=slot.index, pid=process.pid, exit_code=code)
                return
            delay = self._restart_delay(slot, code)
            if delay is None:
                return
            slot.restart_at = self._clock() + delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            slot.restarts += 1
        slot.last_code = None  # stopped between two processes: nothing was left to drain

    def _restart_delay(self, slot: WorkerSlot, code: int) -> float | None:
        """How long before ``slot`` starts again, or None after giving up (all stop)."""
        pid = slot.pid
        if code == EXIT_OK:
            # Nobody asked it to stop (a SIGTERM sent to the worker alone): it owned
            # partitions, so start it again at once; a clean exit is not a crash.
            log.warning("worker exited on its own; starting it again", worker=slot.index,
                        pid=pid, exit_code=code)
            return 0.0
        if code == EXIT_REFUSED:
            self.refused = True
            self._give_up(slot, code, "the worker was refused at start (a setting to fix, "
                          "see its log line); restarting cannot help",
                          "a worker was refused at start; stopping all of them")
            return None
        delay = self._policy.after_death(slot.index, self._clock())
        if delay is None:
            self._give_up(slot, code, f"more than {self.settings.workers.max_restarts} "
                          f"restarts within {self.settings.workers.restart_window_s}s "
                          "(workers.max_restarts, workers.restart_window_s)")
            return None
        log.warning("worker died; starting it again", worker=slot.index, pid=pid,
                    exit_code=code, restart_in_s=round(delay, 2))
        return delay

    def _give_up(self, slot: WorkerSlot, code: int, why: str,
                 event: str = "workers keep dying; stopping all of them") -> None:
        self.gave_up = why
        log.critical(event, worker=slot.index, exit_code=code, reason=why)
        self.request_stop("giving up")

    async def _deadline(self, keepers: list[asyncio.Task[None]]) -> None:
        """Once stopping, kill what has not exited past the workers' own deadline."""
        await self.stopping.wait()
        deadline = self.settings.pipeline.shutdown_timeout_s + STOP_GRACE_S
        _, late = await asyncio.wait(keepers, timeout=deadline)
        if late:
            self.abandoned = True
            log.error("workers did not stop in time; killing them, the next owner replays "
                      "their uncommitted work from the stored offsets", deadline_s=deadline,
                      workers=[slot.index for slot in self.slots if slot.alive])
            for slot in self.slots:
                self._signal(slot, signal.SIGKILL)

    @staticmethod
    def _signal(slot: WorkerSlot, sig: int) -> None:
        if slot.alive and slot.process is not None:
            with contextlib.suppress(ProcessLookupError):  # exited since the check
                slot.process.send_signal(sig)
