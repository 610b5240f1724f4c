"""The one place that decides what an error means: retry, isolate, stall or fatal.

Every stage that meets an error (the lanes, the breaker, the checkpointer, the dead-letter
places and topic, start-up) asks :func:`verdict` and acts on the answer, never on the
error's type. Classified by class (PostgreSQL's SQLSTATE classes as asyncpg mirrors them,
aiokafka's ``retriable``, the OS's error classes), never by message text.

An error it has never seen is a *stall*: the lane keeps its data uncommitted, pauses, says
why on ``/readyz`` and tries again on a capped backoff. That keeps every event safe and the
process up, where the other defaults would not: *isolate* would turn an unknown
infrastructure fault into a flood of dead letters, and *fatal* would stop Weir.
"""

from __future__ import annotations

import socket
import ssl
from enum import StrEnum

import asyncpg
from aiokafka import errors as kafka_errors


class Verdict(StrEnum):
    """What to do about an error."""

    RETRY = "retry"        # transient: the same operation may succeed later
    ISOLATE = "isolate"    # this row's data: bisect the batch, dead-letter the row
    STALL = "stall"        # the sink refuses all work until an operator acts
    FATAL = "fatal"        # configuration: stop (at start, with the setting to fix)


# Connection trouble, server restarts, failover and contention: a later attempt may succeed.
_RETRY_PG: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,          # class 08: connection exceptions
    asyncpg.TransactionRollbackError,         # class 40: serialization failure, deadlock
    asyncpg.OperatorInterventionError,        # class 57: admin shutdown, query cancelled
    asyncpg.InsufficientResourcesError,       # class 53: too many connections, disk full
    asyncpg.LockNotAvailableError,            # 55P03: lock timeout
    asyncpg.ObjectInUseError,                 # 55006: a table busy with DDL
    asyncpg.ReadOnlySQLTransactionError,      # 25006: a replica, i.e. mid-failover
    asyncpg.InFailedSQLTransactionError,      # 25P02: the transaction broke under us
    asyncpg.PostgresSystemError,              # class 58: I/O error on the server
)
# Who we are or where we connect is wrong: retrying cannot fix it.
_FATAL_PG: tuple[type[BaseException], ...] = (
    asyncpg.InvalidAuthorizationSpecificationError,   # class 28: role, password, pg_hba
    asyncpg.InvalidCatalogNameError,                  # 3D000: no such database
)
# The data of one row: integrity (23), data exception (22), a value past an index's size
# limit or another program limit (54).
_ISOLATE_PG: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
# The network or the server went away: the next connection may work.
_RETRY_OS: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, socket.gaierror, EOFError,
    ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
)
# A file that is not there or not readable (a certificate, a key): configuration.
_FATAL_OS: tuple[type[BaseException], ...] = (
    FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
)
_FATAL_KAFKA: tuple[type[BaseException], ...] = (
    kafka_errors.AuthenticationFailedError,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)
# The broker refused this one record (its size, its timestamp), not the topic.
_ISOLATE_KAFKA: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
    kafka_errors.UnsupportedForMessageFormatError,
)


def verdict(exc: BaseException) -> Verdict:  # noqa: PLR0911 - one answer per family, flat
    """What ``exc`` means for the operation that raised it."""
    own = getattr(type(exc), "verdict", None)
    if isinstance(own, Verdict):
        return own
    if isinstance(exc, asyncpg.PostgresError):
        return _postgres(exc)
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return Verdict.FATAL
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        # The connection closed or was left in a broken protocol state under us: a fresh
        # connection from the pool is the cure.
        return Verdict.RETRY
    if isinstance(exc, kafka_errors.KafkaError):
        return _kafka(exc)
    if isinstance(exc, OSError):
        return _os(exc)
    # A ValueError or TypeError is a row's data only where rows are encoded, and that call
    # says so (errors.RowValueRefused); anywhere else it is a bug, which must not
    # dead-letter good rows: stall, say why, and keep the batch.
    return Verdict.STALL


def _postgres(exc: asyncpg.PostgresError) -> Verdict:
    if isinstance(exc, _RETRY_PG):
        return Verdict.RETRY
    if isinstance(exc, _FATAL_PG):
        return Verdict.FATAL
    if isinstance(exc, _ISOLATE_PG):
        return Verdict.ISOLATE
    # Privileges (42501), a missing table, column or function (42P01, 42703, 42883), a
    # missing schema (3F000) and whatever else the server may answer: an operator acts.
    return Verdict.STALL


def _kafka(exc: kafka_errors.KafkaError) -> Verdict:
    if isinstance(exc, _FATAL_KAFKA):
        return Verdict.FATAL
    if isinstance(exc, _ISOLATE_KAFKA):
        return Verdict.ISOLATE
    # aiokafka marks its own request timeout as not retriable; for us it is the network.
    if isinstance(exc, kafka_errors.KafkaTimeoutError) or getattr(exc, "retriable", False):
        return Verdict.RETRY
    return Verdict.STALL  # an authorization the operator must grant, and the rest


def _os(exc: OSError) -> Verdict:
    if isinstance(exc, _RETRY_OS):
        return Verdict.RETRY
    if isinstance(exc, ssl.SSLError):
        return Verdict.FATAL  # an untrusted certificate, a protocol mismatch: configuration
    if isinstance(exc, _FATAL_OS):
        return Verdict.FATAL
    return Verdict.RETRY  # host unreachable, network down, too many open files


def stale_connection(exc: BaseException) -> bool:
    """Does ``exc`` say the pool's connections point at the wrong server (a failover)?

    A replica answering read-only, or a server shutting down: connections opened before
    the failover must be replaced, not reused.
    """
    return isinstance(exc, asyncpg.ReadOnlySQLTransactionError | asyncpg.AdminShutdownError)
