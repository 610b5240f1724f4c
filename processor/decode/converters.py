"""Python values to what asyncpg's binary COPY expects for each column type.

Timestamps become PostgreSQL's own integer (``processor/pgtime.py``): the pool's codec packs
it without the per-value time-zone arithmetic of asyncpg's ``datetime`` codec.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

from processor.pgtime import ONE_US, PG_EPOCH

Converter = Callable[[Any], Any]


def _timestamptz(value: str) -> int:
    parsed = datetime.fromisoformat(value)
    # A timestamp without an offset is taken as UTC rather than the server's zone.
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - PG_EPOCH) // ONE_US


def _numeric(value: float | int) -> Decimal:
    # repr of a float is its shortest round-trip form: 19.99 stays 19.99, not 19.989999...
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _jsonb(value: Any) -> bytes:
    # orjson returns its bytes in a 4 KiB allocation whatever their length; a row holds its
    # jsonb values until the batch commits, so an exact-size copy keeps a row at ~1 KB.
    return bytes(memoryview(orjson.dumps(value)))


CONVERTERS: dict[str, Converter] = {
    "timestamptz": _timestamptz,
    "date": date.fromisoformat,
    "numeric": _numeric,
    "double precision": float,
    "jsonb": _jsonb,
}


def converter_for(pg_type: str) -> Converter | None:
    """The conversion a column needs, or None when the decoded value fits as it is."""
    return CONVERTERS.get(pg_type)


def kafka_time(timestamp_ms: int) -> datetime:
    """A Kafka record timestamp (ms since the epoch) as an aware datetime."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
