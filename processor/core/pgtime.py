"""PostgreSQL's binary timestamptz: microseconds since 2000-01-01 UTC, as a signed 64-bit int.

asyncpg's built-in codec turns every ``datetime`` into that integer with a time-zone
conversion and a ``timedelta`` per value, about 0.8 us, and a row has three timestamps
(the event time, usually twice, and the Kafka timestamp). The decoder therefore hands
COPY the integer itself (:func:`aware_micros`, :func:`kafka_micros`), and the pool's codec
(``sink/pool.py``) packs it in 0.3 us. ``datetime`` and ``date`` values, from any other
caller, are converted exactly as asyncpg does: a naive value is local time, ``datetime.max``
and ``datetime.min`` are the infinities. Reading gives what asyncpg gives: an aware UTC
``datetime``, or naive ``datetime.max``/``min`` for the infinities.
"""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_DAY = date(2000, 1, 1)  # timestamptz integer 0 is its midnight UTC
PG_EPOCH_MS = 946_684_800_000  # PG_EPOCH in Unix milliseconds
PG_EPOCH_US = PG_EPOCH_MS * 1000  # and microseconds
MICROS_PER_DAY = 86_400_000_000
INFINITY = 2**63 - 1
NEG_INFINITY = -(2**63)
ONE_US = timedelta(microseconds=1)
_INT64 = struct.Struct("!q")
# The instants a Python datetime holds in UTC, as timestamptz integers: PostgreSQL takes
# more (4713 BC to 294276 AD), but partition routing and every Python reader (asyncpg's
# codec too) would fail on a UTC year outside 1..9999.
FIRST_US = (datetime.min.replace(tzinfo=UTC) - PG_EPOCH) // ONE_US
LAST_US = (datetime.max.replace(tzinfo=UTC) - PG_EPOCH) // ONE_US
# The same range in Unix milliseconds, for Kafka record timestamps.
UTC_MILLIS = (FIRST_US // 1000 + PG_EPOCH_MS, LAST_US // 1000 + PG_EPOCH_MS)


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
    return aware_micros(value)


def aware_micros(value: datetime) -> int:
    """An aware datetime as PostgreSQL's timestamptz integer (no checks: the hot path's).

    From the timedelta's own fields rather than ``// ONE_US``, which builds a second
    timedelta and divides: the same integer, cheaper. The decoder's generated row builder
    (``decode/rows.py``) inlines exactly this.
    """
    t = value - PG_EPOCH
    return (t.days * 86_400 + t.seconds) * 1_000_000 + t.microseconds


def kafka_micros(timestamp_ms: int) -> int:
    """A Kafka record timestamp (ms since the Unix epoch) as a timestamptz integer."""
    return (timestamp_ms - PG_EPOCH_MS) * 1000


def kafka_micros_or_none(timestamp_ms: int | None) -> int | None:
    """:func:`kafka_micros`, or None for no timestamp or one outside the years 1 to 9999 in
    UTC (a producer may set any: a dead letter then stores no time rather than fail)."""
    if timestamp_ms is None or not UTC_MILLIS[0] <= timestamp_ms <= UTC_MILLIS[1]:
        return None
    return kafka_micros(timestamp_ms)


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
