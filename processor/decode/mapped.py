"""Mapped columns: a typed value from a path into the event, made once per column.

A mapped column (``event_types.<name>.columns`` in the config) names a path and a column
type. Its value per event is the path's value (:mod:`processor.core.paths`), converted by
the column type's converter (the same ones as the contract's own columns, so the same
column-fit checks), or by an epoch or zoned-time converter for a ``timestamptz`` that
declares ``time_unit`` or ``time_zone``. A path that finds nothing (or null) gives the
column's default, converted once at start, or NULL.

Failures raise :class:`~processor.decode.converters.Unfit` with the path in the message;
the decoder turns them into a ``conversion_error`` dead letter naming the column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from processor.core.errors import ConfigError
from processor.core.paths import ABSENT, PathMismatch, compile_walk
from processor.core.pgtime import FIRST_US, LAST_US, PG_EPOCH_US
from processor.core.records import Header, last_header
from processor.core.settings import MappedColumnSettings
from processor.decode.converters import (
    Converter,
    Unfit,
    array_of,
    converter_for,
    show,
    timestamptz_in,
)

Mapped = Callable[[dict[str, Any], "bytes | None", "Sequence[Header]", str, int], Any]

# Microseconds per unit, and units per microsecond, of each epoch unit.
EPOCH_UNITS = {"seconds": (1_000_000, 1), "milliseconds": (1_000, 1),
               "microseconds": (1, 1), "nanoseconds": (1, 1_000)}


def epoch_converter(unit: str) -> Converter:
    """An epoch count in ``unit`` since 1970 (an integer; a finite float for seconds and
    milliseconds) as PostgreSQL's timestamptz integer; sub-microsecond parts floored."""
    multiply, divide = EPOCH_UNITS[unit]

    def convert(value: Any) -> int:
        if type(value) is int:
            micros = value * multiply // divide - PG_EPOCH_US
        elif type(value) is float and multiply > 1 and value - value == 0.0:
            # Exact from its shortest text: 1712345678.123 s is .123000 s, not .122999.
            exact = Decimal(repr(value)) * multiply
            micros = int(exact.to_integral_value(rounding="ROUND_FLOOR")) - PG_EPOCH_US
        else:
            wanted = "an integer" if multiply == 1 else "a number"
            raise Unfit(f"{show(value)} is not {wanted} of {unit} since 1970")
        if not FIRST_US <= micros <= LAST_US:
            raise Unfit(f"{show(value)} {unit} since 1970 is outside the years 1 to 9999")
        return micros
    return convert


def zoned_converter(zone: str) -> Converter:
    """An RFC 3339 string as PostgreSQL's timestamptz integer, one without an offset taken
    in ``zone`` (a wall time that occurs twice as its first occurrence)."""
    return timestamptz_in(ZoneInfo(zone))


def _bytea(value: Any) -> bytes:
    if type(value) is not bytes:
        raise Unfit(f"{show(value)} is not bytes")
    return value


# Column types whose value a key's or header's text gives as it is; the others read the
# text as JSON (``42``, ``true``, ``{"a": 1}``), as a tombstone's key is read.
AS_TEXT = frozenset({"text", "uuid", "timestamptz", "date"})


def value_converter(column: MappedColumnSettings) -> Converter:
    """How a mapped column's found value becomes its column's value."""
    if column.time_unit is not None or column.time_zone is not None:
        one = epoch_converter(column.time_unit) if column.time_unit is not None \
            else zoned_converter(str(column.time_zone))
        return array_of(one, column.type) if column.type.endswith("[]") else one
    if column.type == "bytea":
        return _bytea
    if column.source == "timestamp":
        return _same  # already PostgreSQL's integer (its range is the record's check)
    return converter_for(column.type)


def _same(value: Any) -> Any:
    return value


def compile_mapped(column: MappedColumnSettings, event_type: str) -> Mapped:
    """The value of one mapped column for a record; raises :class:`Unfit`.

    Raises :class:`ConfigError` at once if the column's default does not fit its column.
    """
    convert = value_converter(column)
    default = converted_default(column, event_type)
    find = _finder(column)

    def mapped(event: dict[str, Any], key: bytes | None, headers: Sequence[Header],
               topic: str, timestamp_ms: int) -> Any:
        value = find(event, key, headers, topic, timestamp_ms)
        if value is ABSENT or value is None:
            return default
        try:
            return convert(value)
        except Unfit as exc:
            raise Unfit(f"{_where(column)}: {exc}") from None
    return mapped


def converted_default(column: MappedColumnSettings, event_type: str) -> Any:
    """The column's default as its column holds it (None: NULL); raises
    :class:`ConfigError` if it does not fit."""
    if column.default is None:
        return None
    try:
        return value_converter(column)(column.default)
    except (Unfit, InvalidOperation) as exc:
        raise ConfigError([f"event_types.{event_type}.columns ({column.name}): its default "
                           f"does not fit a {column.type} column: {exc}"]) from None


def _where(column: MappedColumnSettings) -> str:
    if column.source == "event":
        return f"path {column.path!r}"
    if column.source == "header":
        return f"header {column.header!r}"
    return f"the key's path {column.path!r}" if column.path else f"the record's {column.source}"


Finder = Callable[[dict[str, Any], "bytes | None", "Sequence[Header]", str, int], Any]


def _finder(column: MappedColumnSettings) -> Finder:
    """Where a mapped column's raw value comes from: the event, the key, a header, …"""
    where = _where(column)
    walk = compile_walk(column.steps) if column.steps else None

    def walked(value: Any) -> Any:
        assert walk is not None
        try:
            return walk(value)
        except PathMismatch as exc:
            raise Unfit(f"{where}: {exc}") from None

    if column.source == "event":
        if walk is None:  # the path ".": the value itself (a child table's scalar item)
            return lambda event, key, headers, topic, ts: event
        return lambda event, key, headers, topic, ts: walked(event)
    if column.source == "topic":
        return lambda event, key, headers, topic, ts: topic
    if column.source == "timestamp":
        return lambda event, key, headers, topic, ts: ts * 1000 - PG_EPOCH_US
    as_bytes = column.type == "bytea"
    as_text = column.type in AS_TEXT and walk is None and column.time_unit is None

    def text_of(data: bytes | None, what: str) -> Any:
        if data is None or as_bytes:
            return data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Unfit(f"{what} {show(data)} is not UTF-8 text") from None
        if as_text:
            return text
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise Unfit(f"{what} {show(text)} is not JSON: {exc}") from None
        return walked(parsed) if walk is not None else parsed

    if column.source == "key":
        return lambda event, key, headers, topic, ts: text_of(key, "the key")
    name = column.header

    def header(event: dict[str, Any], key: bytes | None, headers: Sequence[Header],
               topic: str, ts: int) -> Any:
        # No such header and one without a value alike: the column's default or NULL.
        return text_of(last_header(headers, str(name)), f"header {name!r}")
    return header
