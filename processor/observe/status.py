"""The status page's document (``/status.json``): one shape, built here for a process, a
process still starting, and a fleet of workers merged into one."""

from __future__ import annotations

import time
from typing import Any


def status_document(
    ready: bool, partitions: list[dict[str, Any]], *, lag: float = 0,
    max_lag_seconds: float = 0.0, written_per_s: float = 0.0, dead_letters: float = 0,
    owned: float = 0, paused: float = 0, mirrors: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``/status.json``: readiness, one entry per partition, the totals, one entry per
    mirror that has written (its lag behind its source, its changes and deletes), and
    ``extra`` (``starting`` while a process starts, ``workers`` for a fleet)."""
    return {
        "ready": ready,
        "time": time.time(),
        "partitions": partitions,
        "mirrors": mirrors or [],
        "totals": {
            "lag": lag,
            "max_lag_seconds": round(max_lag_seconds, 3),
            "written_per_s": round(written_per_s, 1),
            "dead_letters": dead_letters,
            "partitions": owned,
            "paused": paused,
        },
        **extra,
    }
