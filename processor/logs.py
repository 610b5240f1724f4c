"""structlog setup: JSON lines on stdout for machines, a console format for people."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

_SECRET_KEYS = ("password", "secret", "token", "sasl")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never print a value whose key names a secret, whoever bound it."""
    for key in event:
        if any(word in key.lower() for word in _SECRET_KEYS):
            event[key] = "***"
    return event


def _orjson_dumps(obj: Any, default: Any) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure(level: str = "info", fmt: str = "auto") -> None:
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
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
