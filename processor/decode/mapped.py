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

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from processor.core.errors import ConfigError
from processor.core.paths import ABSENT, PathMismatch, compile_walk
from processor.core.pgtime import FIRST_US, LAST_US, PG_EPOCH_MS, aware_micros
from processor.core.settings import MappedColumnSettings
from processor.decode.converters import Converter, Unfit, converter_for, show

Mapped = Callable[[dict[str, Any]], Any]

# Microseconds per unit, and units per microsecond, of each epoch unit.
_PER_UNIT = {"seconds": (1_000_000, 1), "milliseconds": (1_000, 1),
             "microseconds": (1, 1), "nanoseconds": (1, 1_000)}
_PG_EPOCH_US = PG_EPOCH_MS * 1000


def epoch_converter(unit: str) -> Converter:
    """An epoch count in ``unit`` since 1970 (an integer; a finite float for seconds and
    milliseconds) as PostgreSQL's timestamptz integer; sub-microsecond parts floored."""
    multiply, divide = _PER_UNIT[unit]

    def convert(value: Any) -> int:
        if type(value) is int:
            micros = value * multiply // divide - _PG_EPOCH_US
        elif type(value) is float and multiply > 1 and value - value == 0.0:
            # Exact from its shortest text: 1712345678.123 s is .123000 s, not .122999.
            exact = Decimal(repr(value)) * multiply
            micros = int(exact.to_integral_value(rounding="ROUND_FLOOR")) - _PG_EPOCH_US
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
    tz = ZoneInfo(zone)

    def convert(value: Any) -> int:
        if type(value) is not str:
            raise Unfit(f"{show(value)} is not a date-time string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise Unfit(f"{show(value)} is not a valid date-time: {exc}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        try:
            micros = aware_micros(parsed.astimezone(UTC))
        except OverflowError:
            micros = LAST_US + 1
        if not FIRST_US <= micros <= LAST_US:
            raise Unfit(f"{show(value)} is outside the years 1 to 9999 in UTC")
        return micros
    return convert


def value_converter(column: MappedColumnSettings) -> Converter:
    """How a mapped column's found value becomes its column's value."""
    if column.time_unit is not None:
        return epoch_converter(column.time_unit)
    if column.time_zone is not None:
        return zoned_converter(column.time_zone)
    return converter_for(column.type)


def compile_mapped(column: MappedColumnSettings, event_type: str) -> Mapped:
    """The value of one mapped column for an event; raises :class:`Unfit`.

    Raises :class:`ConfigError` at once if the column's default does not fit its column.
    """
    walk = compile_walk(column.steps)
    convert = value_converter(column)
    default = None
    if column.default is not None:
        try:
            default = convert(column.default)
        except (Unfit, InvalidOperation) as exc:
            raise ConfigError([f"event_types.{event_type}.columns ({column.name}): its default "
                              f"does not fit a {column.type} column: {exc}"]) from None
    path = column.path

    def mapped(event: dict[str, Any]) -> Any:
        try:
            value = walk(event)
        except PathMismatch as exc:
            raise Unfit(f"path {path!r}: {exc}") from None
        if value is ABSENT or value is None:
            return default
        try:
            return convert(value)
        except Unfit as exc:
            raise Unfit(f"path {path!r}: {exc}") from None
    return mapped
