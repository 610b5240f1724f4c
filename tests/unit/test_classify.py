import asyncpg
import pytest
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from processor.classify import is_row_specific, is_transient
from processor.errors import EventRejected, SinkUnavailable
from processor.sink.writer import died_under


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.ConnectionDoesNotExistError("gone"),
        asyncpg.SerializationError("could not serialize"),
        asyncpg.DeadlockDetectedError("deadlock"),
        asyncpg.AdminShutdownError("terminating"),
        asyncpg.CannotConnectNowError("starting up"),
        asyncpg.TooManyConnectionsError("too many"),
        asyncpg.LockNotAvailableError("lock timeout"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        KafkaConnectionError("closed"),
        SinkUnavailable("down"),
    ],
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.CheckViolationError("check"),
        asyncpg.NotNullViolationError("null"),
        asyncpg.NumericValueOutOfRangeError("range"),
        asyncpg.StringDataRightTruncationError("too long"),
        asyncpg.UndefinedTableError("no table"),
        asyncpg.InsufficientPrivilegeError("denied"),
        CommitFailedError("rebalanced"),
        EventRejected("schema_violation", "validate", "bad"),
        ValueError("bug"),
    ],
)
def test_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize(
    ("exc", "row"),
    [
        (asyncpg.CheckViolationError("check"), True),
        (asyncpg.NotNullViolationError("null"), True),
        (asyncpg.NumericValueOutOfRangeError("range"), True),
        (asyncpg.StringDataRightTruncationError("too long"), True),
        (asyncpg.UndefinedTableError("no table"), False),
        (asyncpg.InsufficientPrivilegeError("denied"), False),
        (asyncpg.UndefinedColumnError("no column"), False),
    ],
)
def test_only_data_errors_are_isolated_row_by_row(exc: BaseException, row: bool) -> None:
    assert is_row_specific(exc) is row


def test_an_error_that_came_with_a_dead_connection_is_transient() -> None:
    # What the driver reports when the transport breaks mid-COPY need not be a connection
    # error; the closed connection decides.
    assert died_under(RuntimeError("transport is None"), closed=True)
    assert not died_under(RuntimeError("transport is None"), closed=False)
    assert not died_under(asyncpg.CheckViolationError("rejected"), closed=False)
    assert not died_under(asyncpg.ConnectionDoesNotExistError("gone"), closed=True)  # already
