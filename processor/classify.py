"""The one place that decides whether a driver error is transient or permanent.

Classified by exception class, following PostgreSQL's SQLSTATE classes as asyncpg mirrors
them, never by message text.
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaError

# Connection trouble, server restarts and contention: a later attempt may well succeed.
_TRANSIENT_PG: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,          # class 08: connection exceptions
    asyncpg.TransactionRollbackError,         # class 40: serialization failure, deadlock
    asyncpg.OperatorInterventionError,        # class 57: admin shutdown, cannot connect now
    asyncpg.InsufficientResourcesError,       # class 53: too many connections, disk full
    asyncpg.LockNotAvailableError,            # 55P03: lock timeout
    asyncpg.InterfaceError,                   # the connection closed under us
)


def is_row_specific(exc: BaseException) -> bool:
    """True if PostgreSQL refused the *data* (class 22 data exception, class 23 integrity).

    Only such a failure is worth isolating by bisection: the batch minus the offending rows
    will commit. Anything else permanent (a missing table or privilege, a syntax error)
    would fail for every row alike, and must stop the lane rather than dead-letter the
    whole stream.
    """
    return isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)


def is_transient(exc: BaseException) -> bool:
    """True if retrying the same operation later may succeed."""
    retriable = getattr(type(exc), "retriable", None)
    if isinstance(retriable, bool):
        return retriable
    if isinstance(exc, (*_TRANSIENT_PG, OSError, TimeoutError)):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return False
