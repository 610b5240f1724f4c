"""One verdict per error: every family of error Weir meets, and what it means."""

import ssl

import asyncpg
import pytest
from aiokafka.errors import (
    AuthenticationFailedError,
    CommitFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)

from processor.errors import ConfigError, EventRejected, MigrationRequired, SinkUnavailable
from processor.sink.writer import died_under
from processor.verdict import Verdict, stale_connection, verdict

RETRY = [
    asyncpg.ConnectionDoesNotExistError("gone"),
    asyncpg.SerializationError("could not serialize"),
    asyncpg.DeadlockDetectedError("deadlock"),
    asyncpg.AdminShutdownError("terminating"),
    asyncpg.CannotConnectNowError("starting up"),
    asyncpg.TooManyConnectionsError("too many"),
    asyncpg.LockNotAvailableError("lock timeout"),
    asyncpg.QueryCanceledError("statement timeout"),
    asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    asyncpg.InterfaceError("connection is closed"),
    # What an idle pooled connection says after the server's shutdown notice reached it
    # between two operations: a fresh connection is the cure.
    asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in "
                                "progress"),
    ConnectionRefusedError(111, "refused"),
    ConnectionResetError(104, "reset by peer"),
    TimeoutError(),
    ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
    KafkaConnectionError("closed"),
    KafkaTimeoutError(),
    SinkUnavailable("down"),
]
ISOLATE = [
    asyncpg.CheckViolationError("check"),
    asyncpg.NotNullViolationError("null"),
    asyncpg.NumericValueOutOfRangeError("range"),
    asyncpg.StringDataRightTruncationError("too long"),
    asyncpg.UntranslatableCharacterError("\\u0000 cannot be converted to text"),
    asyncpg.ProgramLimitExceededError("index row size exceeds maximum"),
    # asyncpg's COPY encoders, on the client side, for one value of one row.
    ValueError("invalid UUID 'not-a-uuid'"),
    OverflowError("value out of int64 range"),
    TypeError("an integer is required"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    MessageSizeTooLargeError(),
    EventRejected("schema_violation", "validate", "bad"),
]
STALL = [
    asyncpg.UndefinedTableError("no table"),
    asyncpg.UndefinedColumnError("no column"),
    asyncpg.UndefinedFunctionError("no function"),
    asyncpg.InsufficientPrivilegeError("permission denied for table orders"),
    asyncpg.InvalidSchemaNameError("no schema"),
    asyncpg.InternalServerError("something new"),
    TopicAuthorizationFailedError(),
    CommitFailedError("rebalanced"),
    RuntimeError("never seen before"),
]
FATAL = [
    asyncpg.InvalidPasswordError("password authentication failed for user weir"),
    asyncpg.InvalidAuthorizationSpecificationError("no pg_hba.conf entry"),
    asyncpg.InvalidCatalogNameError('database "nope" does not exist'),
    ssl.SSLCertVerificationError(1, "certificate verify failed"),
    FileNotFoundError(2, "No such file", "ca.pem"),
    AuthenticationFailedError(),
    ConfigError(["kafka.group_id: required"]),
    MigrationRequired("run weir migrate"),
]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [(e, Verdict.RETRY) for e in RETRY] + [(e, Verdict.ISOLATE) for e in ISOLATE]
    + [(e, Verdict.STALL) for e in STALL] + [(e, Verdict.FATAL) for e in FATAL],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_verdict(exc: BaseException, expected: Verdict) -> None:
    assert verdict(exc) is expected


def test_an_error_never_seen_stalls_rather_than_floods_or_exits() -> None:
    class Novel(Exception):
        pass

    assert verdict(Novel()) is Verdict.STALL


def test_a_failover_asks_for_fresh_connections() -> None:
    assert stale_connection(asyncpg.ReadOnlySQLTransactionError("read-only"))
    assert stale_connection(asyncpg.AdminShutdownError("terminating"))
    assert not stale_connection(asyncpg.InsufficientPrivilegeError("denied"))


def test_an_error_that_came_with_a_dead_connection_is_transient() -> None:
    # What the driver reports when the transport breaks mid-COPY need not be a connection
    # error; the closed connection decides.
    assert died_under(RuntimeError("transport is None"), closed=True)
    assert not died_under(RuntimeError("transport is None"), closed=False)
    assert not died_under(asyncpg.CheckViolationError("rejected"), closed=False)
    assert not died_under(asyncpg.ConnectionDoesNotExistError("gone"), closed=True)  # already
