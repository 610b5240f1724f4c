"""PostgreSQL's binary timestamptz: microseconds since 2000-01-01 UTC, as a signed 64-bit int.

asyncpg's built-in codec turns every ``datetime`` into that integer with a time-zone
conversion and a ``timedelta`` per value, about 0.8 us, and a row has three timestamps
(the event time, usually twice, and the Kafka timestamp). The decoder therefore hands
COPY the integer itself (:func:`micros`, :func:`kafka_micros`), and the pool's codec
(``sink/pool.py``) packs it in 0.3 us. ``datetime`` and ``date`` values, from any other
caller, are converted exactly as asyncpg does: a naive value is local time, ``datetime.max``
and ``datetime.min`` are the infinities. Reading gives what asyncpg gives: an aware UTC
``datetime``, or naive ``datetime.max``/``min`` for the infinities.
"""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_MS = 946_684_800_000  # PG_EPOCH in Unix milliseconds
INFINITY = 2**63 - 1
NEG_INFINITY = -(2**63)
ONE_US = timedelta(microseconds=1)
_INT64 = struct.Struct("!q")


def micros(value: datetime | date) -> int:
    """A datetime (naive = local time, as asyncpg) or date as PostgreSQL's timestamptz integer."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day).astimezone()
    naive = value.replace(tzinfo=None)
    if naive == datetime.max:
        return INFINITY
    if naive == datetime.min:
        return NEG_INFINITY
    if value.tzinfo is None:
        value = value.astimezone()
    return (value - PG_EPOCH) // ONE_US


def kafka_micros(timestamp_ms: int) -> int:
    """A Kafka record timestamp (ms since the Unix epoch) as a timestamptz integer."""
    return (timestamp_ms - PG_EPOCH_MS) * 1000


def encode(value: int | datetime | date) -> bytes:
    """The binary wire form; an int is taken as already converted (the decoder's rows)."""
    if type(value) is int:
        return _INT64.pack(value)
    if isinstance(value, datetime | date):
        return _INT64.pack(micros(value))
    raise TypeError(f"expected a datetime.date or datetime.datetime instance, got "
                    f"{type(value).__name__!r}")


def decode(data: bytes) -> datetime:
    """The wire form as asyncpg's own codec returns it."""
    (value,) = _INT64.unpack(data)
    if value == INFINITY:
        return datetime.max
    if value == NEG_INFINITY:
        return datetime.min
    return PG_EPOCH + timedelta(microseconds=value)
