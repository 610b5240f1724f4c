"""Start-up against servers that may not answer yet: wait, say why, or stop at once.

A pod often starts before its database (or while it fails over): a server that refuses
connections, does not answer or is still starting is waited for, with backoff and one log
line per attempt naming the host, the port and what happened, while ``/readyz`` says
"starting". A wrong password, a missing database or an untrusted certificate will not heal
by waiting: :class:`StartupRefused` names the setting to fix, and ``weir run`` exits 2 with
that one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import structlog

from processor.contracts import Contract
from processor.core.connections import connect
from processor.core.errors import MigrationRequired, WeirError, describe
from processor.core.retry import Backoff, retry_transient
from processor.core.settings import Settings
from processor.core.verdict import Verdict, verdict
from processor.observe.health import Check
from processor.schema.migrate import behind, missing_tables

T = TypeVar("T")
log = structlog.get_logger(__name__)


class StartupRefused(Exception):
    """The server answered with something waiting cannot fix; the message names the setting."""


def where(settings: Settings) -> tuple[str, int, str]:
    """Host, port and database of ``postgres.dsn``, for log lines (never its password)."""
    parts = urlsplit(settings.postgres.dsn)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return parts.hostname or "localhost", port, parts.path.lstrip("/") or "(default)"


def _setting_to_fix(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "postgres.password (or WEIR_POSTGRES__PASSWORD, postgres.password_file)"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "postgres.dsn (the database name)"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return "postgres.dsn (the user), or the server's pg_hba.conf"
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError):
        return "postgres.sslmode and postgres.sslrootcert (the server's certificate)"
    if isinstance(exc, OSError):
        return "postgres.sslrootcert, postgres.sslcert, postgres.sslkey (a file)"
    return "postgres.dsn"


class StartupState:
    """What start-up is waiting for, as a readiness check."""

    def __init__(self) -> None:
        self.waiting_for = "start-up"
        self.last_error = ""

    async def probe(self) -> Check:
        """Not ready while starting; the detail says what it waits for."""
        detail = {"waiting_for": self.waiting_for}
        error = f"starting: waiting for {self.waiting_for}"
        return Check(False, {**detail, "error": f"{error}: {self.last_error}"
                                                if self.last_error else error})


async def wait_for_postgres(
    settings: Settings, attempt: Callable[[], Awaitable[T]], what: str = "PostgreSQL",
    state: StartupState | None = None,
) -> T:
    """Run ``attempt`` (a connect, a pool) until PostgreSQL takes it.

    Raises :class:`StartupRefused` for a verdict of *fatal*, and what ``attempt`` raised for
    any error that is neither *retry* nor *fatal*.
    """
    host, port, database = where(settings)
    return await _wait(attempt, what, settings.postgres.start_retry_max_s, state,
                       {"host": host, "port": port, "database": database},
                       lambda exc: f"PostgreSQL at {host}:{port} (database {database})",
                       _setting_to_fix)


async def wait_for_kafka(
    settings: Settings, attempt: Callable[[], Awaitable[T]], what: str = "Kafka",
    state: StartupState | None = None,
) -> T:
    """Run ``attempt`` (a consumer or producer start) until the brokers answer."""
    servers = settings.kafka.bootstrap_servers
    return await _wait(attempt, what, settings.postgres.start_retry_max_s, state,
                       {"bootstrap_servers": servers}, lambda exc: f"Kafka at {servers}",
                       lambda exc: "kafka.security_protocol, kafka.sasl_mechanism, "
                                   "kafka.sasl_username, kafka.sasl_password, kafka.ssl_cafile")


async def _wait(
    attempt: Callable[[], Awaitable[T]], what: str, retry_max_s: float,
    state: StartupState | None, address: dict[str, object],
    server: Callable[[BaseException], str], to_fix: Callable[[BaseException], str],
) -> T:
    def waiting(exc: Exception, tries: int, wait: float) -> None:
        error = _error(exc)
        if state is not None:
            state.waiting_for, state.last_error = what, error
        log.warning(f"waiting for {what}", **address, attempt=tries,
                    error=_explain(exc, error), retry_in_s=round(wait, 1))

    try:
        return await retry_transient(attempt, what, Backoff(0.5, retry_max_s),
                                     operation="startup", report=waiting)
    except Exception as exc:
        # A fatal verdict of the server's (not one of Weir's own errors, which say what to
        # do themselves: a migration to run) names the setting to fix.
        if verdict(exc) is Verdict.FATAL and not isinstance(exc, WeirError):
            raise StartupRefused(
                f"{server(exc)} refused Weir: {_error(exc)}. Fix {to_fix(exc)}") from exc
        raise


def _error(exc: BaseException) -> str:
    return describe(exc) if str(exc) else type(exc).__name__


def _explain(exc: BaseException, error: str) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time (frozen, or a network drop)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (not running, or not listening there)"
    return error


async def check_tables(settings: Settings, contracts: Mapping[str, Contract]) -> None:
    """Refuse to start on tables that are missing or behind their contracts."""
    conn = await connect(settings)
    try:
        missing = await missing_tables(conn, settings)
        changes = [] if missing else await behind(conn, settings, dict(contracts))
    finally:
        await conn.close()
    if missing:
        raise MigrationRequired(f"tables {missing} do not exist: run `weir migrate` first")
    if changes:
        raise MigrationRequired("tables are behind their contracts: run `weir migrate` "
                                "first:\n" + "\n".join(f"  - {c}" for c in changes))
