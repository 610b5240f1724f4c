"""The one error hierarchy of Weir.

Every error carries its ``verdict`` (retry, isolate, stall, fatal) as a class attribute, and
:func:`processor.core.verdict.verdict` reads it; errors from asyncpg, aiokafka and the OS get
theirs in that same function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

from processor.core.verdict import Verdict


class WeirError(Exception):
    """Root of every error Weir raises on purpose."""

    verdict: ClassVar[Verdict] = Verdict.STALL


class ConfigError(WeirError):
    """The configuration is invalid; ``problems`` lists each bad setting and why."""

    verdict = Verdict.FATAL

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class TransientError(WeirError):
    """A fault that may heal by itself: retry with backoff."""

    verdict = Verdict.RETRY


class PermanentError(WeirError):
    """A fault that retrying cannot fix."""

    verdict = Verdict.FATAL


class EventRejected(PermanentError):
    """One event cannot be written; it goes to the dead-letter path with ``reason``.

    ``reason`` is a short, stable code (``decode_error``, ``schema_violation`` ...) that
    producers and dashboards can group by; the message says what exactly was wrong.
    """

    verdict = Verdict.ISOLATE

    def __init__(self, reason: str, stage: str, message: str) -> None:
        self.reason = reason
        self.stage = stage
        super().__init__(message)


class RowValueRefused(WeirError):
    """asyncpg's COPY encoder refused one value of a row, on the client side (a malformed
    uuid, an int past int64, a wrong Python type): that row's data, to isolate.

    Only the call that encodes rows raises it (:func:`encoding_rows`); the same error
    classes anywhere else are a bug of Weir's and stall, so a bug cannot dead-letter
    good rows.
    """

    verdict = Verdict.ISOLATE


@contextlib.contextmanager
def encoding_rows() -> Iterator[None]:
    """Around the one asyncpg call that encodes row values (the COPY): what its encoders
    refuse becomes :class:`RowValueRefused`."""
    try:
        yield
    except (ValueError, OverflowError, TypeError, UnicodeError) as exc:
        raise RowValueRefused(describe(exc)) from exc


def describe(exc: BaseException) -> str:
    """An error as logs and dead letters show it: its class, then its message."""
    return f"{type(exc).__name__}: {exc}"


class SinkUnavailable(TransientError):
    """PostgreSQL cannot be reached or asked us to back off."""


class TruncateHeld(WeirError):
    """A mirror's source table was truncated and its ``truncates`` is ``stall``: the batch
    (and its lane) waits, uncommitted, until an operator chooses ``truncate`` or
    ``ignore`` and restarts. A stall: said on ``/readyz``, retried, never a dead letter."""


class InstanceTaken(PermanentError):
    """Another live Weir process holds this process's ``kafka.group_instance_id``."""


class MigrationRequired(PermanentError):
    """The database does not hold the tables the configuration needs."""
