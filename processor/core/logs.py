"""structlog setup: JSON lines on stdout for machines, a console format for people.

Every line carries ``timestamp`` (ISO 8601, UTC), ``level`` and ``event`` (a fixed message),
plus the context bound where it was logged (``topic``, ``partition``, ``lane``, ``offset``,
``attempt``, ``error``…). Two processors guard the output: one blanks secrets, one stops
a repeated warning from printing a million times.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from aiokafka import errors as kafka_errors

_SECRET_KEYS = ("password", "secret", "token", "sasl")
# user:password@ inside any URI-like string (a DSN in an error message, say).
_URI_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
EventDict = MutableMapping[str, Any]


def redact(_: Any, __: str, event: EventDict) -> EventDict:
    """Never print a secret: keys that name one are blanked, URI passwords are masked."""
    for key, value in event.items():
        if any(word in key.lower() for word in _SECRET_KEYS):
            event[key] = "***"
        elif isinstance(value, str) and "://" in value:
            event[key] = _URI_PASSWORD.sub(r"\1***@", value)
    return event


class RateLimiter:
    """Print a repeated warning or error once per window, then say how many were held back.

    Repeats are the same level, event and error text. Info and debug lines pass untouched:
    they are not where storms come from (a dead database makes every lane retry).
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self._window_s = window_s
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}

    def __call__(self, _: Any, method: str, event: EventDict) -> EventDict:
        """structlog processor: drop a repeat inside the window, count it."""
        if method not in ("warning", "error", "critical", "exception"):
            return event
        key = (method, str(event.get("event")), str(event.get("error", ""))[:200])
        now = time.monotonic()
        started, held = self._seen.get(key, (0.0, 0))
        if now - started < self._window_s:
            self._seen[key] = (started, held + 1)
            raise structlog.DropEvent
        if held:
            event["repeated"] = held  # lines like this one held back in the last window
        self._seen[key] = (now, 0)
        if len(self._seen) > 10_000:  # bounded: forget the oldest keys
            for stale in sorted(self._seen, key=lambda k: self._seen[k][0])[:5_000]:
                del self._seen[stale]
        return event


def _orjson_dumps(obj: Any, default: Any) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure(level: str = "info", fmt: str = "auto", repeat_window_s: float = 10.0) -> None:
    """Configure structlog once, at start; every module logs through ``structlog.get_logger``."""
    console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if console else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            RateLimiter(repeat_window_s),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(renderer, level)


def _route_standard_logging(renderer: Any, level: str) -> None:
    """Lines from the standard library's logging (aiokafka's own, asyncio's) go through the
    same redaction and renderer, so every line is JSON with a level, never plain text."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,  # a worker's id on aiokafka's lines too
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries' info lines (aiokafka's subscription changes, say) are chatter, and would
    # land in the output of commands such as `weir dlq list --json`: warnings and up only,
    # as before, now as JSON.
    configured = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(max(configured, logging.WARNING))
    coordinator = logging.getLogger(GroupForming.LOGGER)
    coordinator.filters[:] = [GroupForming(configured)]
    coordinator.setLevel(logging.INFO)  # the filter must see the group's "synced" line


class GroupForming(logging.Filter):
    """aiokafka's lines that a consumer group forming is expected to cause, at info.

    While a new group forms (on a fresh broker, ``__consumer_offsets`` is created first),
    aiokafka logs "Group Coordinator Request failed: GroupCoordinatorNotAvailableError" at
    error and "Marking the coordinator dead" at warning, and retries: normal start-up, but
    what a log alert pages on. Those two messages, and only them, are info until the
    process's group first syncs, for at most ``patience_s`` from start; after that (a
    coordinator lost mid-run, or never found) they keep aiokafka's own level. The logger's
    other info lines stay out, as every library's are.
    """

    LOGGER = "aiokafka.consumer.group_coordinator"
    _SYNCED = "Successfully synced group %s with generation %s"
    _FIND_FAILED = "Group Coordinator Request failed: %s"
    _MARKED_DEAD = "Marking the coordinator dead (node %s)for group %s."
    # Find-coordinator answers that mean "not ready yet", not "wrong".
    _NOT_READY = (kafka_errors.GroupCoordinatorNotAvailableError,
                  kafka_errors.CoordinatorLoadInProgressError,
                  kafka_errors.NotCoordinatorForGroupError)

    def __init__(self, configured: int, patience_s: float = 60.0) -> None:
        super().__init__()
        self._configured = configured
        self._until = time.monotonic() + patience_s
        self._formed = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep warnings and up, downgrade the expected ones; drop the library's info."""
        if record.msg == self._SYNCED:
            self._formed = True
        if record.levelno >= logging.WARNING and self._expected(record):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return self._configured <= logging.INFO
        return record.levelno >= logging.WARNING

    def _expected(self, record: logging.LogRecord) -> bool:
        if self._formed or time.monotonic() > self._until:
            return False
        if record.msg == self._MARKED_DEAD:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return record.msg == self._FIND_FAILED and bool(args) and isinstance(
            args[0], self._NOT_READY)
