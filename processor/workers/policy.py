"""When a dead worker starts again, and when the supervisor stops trying.

A worker that dies is started again after a delay that doubles with each of its recent
deaths (``workers.restart_backoff_s`` up to ``workers.restart_backoff_max_s``), so a worker
that cannot stay up does not spin. More than ``workers.max_restarts`` restarts of any
workers within ``workers.restart_window_s`` is a crash loop: restarting will not fix it,
and an orchestrator (or a person) should see the process fail instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from processor.core.settings import WorkersSettings

# What a worker's exit code says about starting it again.
EXIT_OK = 0
EXIT_REFUSED = 2  # PostgreSQL refused Weir, or the config is bad: the same again next time


@dataclass
class RestartPolicy:
    """Restart delays and the give-up decision, from the times of past deaths."""

    settings: WorkersSettings
    _deaths: dict[int, deque[float]] = field(default_factory=dict)
    _restarts: deque[float] = field(default_factory=deque)

    def after_death(self, worker: int, now: float) -> float | None:
        """Seconds to wait before starting ``worker`` again, or None to give up."""
        window = self.settings.restart_window_s
        _forget_before(self._restarts, now - window)
        if len(self._restarts) >= self.settings.max_restarts:
            return None
        deaths = self._deaths.setdefault(worker, deque())
        _forget_before(deaths, now - window)
        delay: float = min(self.settings.restart_backoff_max_s,
                           self.settings.restart_backoff_s * 2.0 ** min(len(deaths), 30))
        deaths.append(now)
        self._restarts.append(now)
        return delay

    def recent_restarts(self, now: float) -> int:
        """Restarts inside the window, for the give-up log line."""
        _forget_before(self._restarts, now - self.settings.restart_window_s)
        return len(self._restarts)


def _forget_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] < cutoff:
        times.popleft()


def final_exit_code(codes: list[int | None], abandoned: bool) -> int:
    """The parent's exit code from each worker's last exit (None: no process at the stop).

    0 when every worker drained cleanly, 3 when a shutdown deadline passed (the parent's or
    a worker's own), 1 for anything else.
    """
    if abandoned:
        return 3
    ended = [c for c in codes if c is not None]
    if all(c == EXIT_OK for c in ended):
        return EXIT_OK
    if all(c in (EXIT_OK, 3) for c in ended):
        return 3
    return 1
