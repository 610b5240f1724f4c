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

from processor.core.errors import (
    ConfigError,
    EventRejected,
    MigrationRequired,
    RowValueRefused,
    SinkUnavailable,
    encoding_rows,
)
from processor.core.verdict import Verdict, stale_connection, verdict

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
    # asyncpg's COPY encoders, on the client side, for one value of one row: the COPY
    # says so (encoding_rows).
    RowValueRefused("ValueError: invalid UUID 'not-a-uuid'"),
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
    # The same classes raised outside the COPY: a bug of Weir's, never a row's data.
    ValueError("not enough values to unpack"),
    OverflowError("int too large"),
    TypeError("'NoneType' object is not subscriptable"),
    AttributeError("'NoneType' object has no attribute 'values'"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
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


@pytest.mark.parametrize("refused", [
    ValueError("invalid UUID 'not-a-uuid'"), OverflowError("value out of int64 range"),
    TypeError("expected str, got int"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
])
def test_what_the_copy_encoder_refuses_is_the_rows_data(refused: Exception) -> None:
    with pytest.raises(RowValueRefused) as info, encoding_rows():
        raise refused
    assert verdict(info.value) is Verdict.ISOLATE
    assert str(info.value) == f"{type(refused).__name__}: {refused}"
    assert info.value.__cause__ is refused
