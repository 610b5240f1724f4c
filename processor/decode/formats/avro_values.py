"""Avro's values as a JSON producer would have sent them: one converter per logical type.

Both Avro readers (:mod:`.avro_compiled`'s generated code and fastavro's, in :mod:`.avro`)
convert with these, so a value reads the same whichever reads it: times as ISO 8601 text, a
decimal as an exact :class:`~decimal.Decimal`, bytes and fixed as base64. They refuse what
no column can hold: a decimal with more digits than its precision (fastavro's own reader
rounds it, silently), a time past the year 9999.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

Convert = Callable[[Any], Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)


class Unfitting(ValueError):
    """A logical value no column can hold (a decimal past its precision, a time past 9999);
    ``path`` names the field, outermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


# Decimals of up to this many digits are read as floats, exactly (see decimal()).
FLOAT_DIGITS = 15


def decimal(precision: int, scale: int) -> Convert:
    """The converter of a ``decimal(precision, scale)`` value's bytes (its unscaled integer).

    Up to 15 digits (and a scale up to 22) the value is the float a JSON producer sends for
    it, and exactly the decimal: the unscaled integer and the power of ten are both exact
    doubles, so the division rounds to the double nearest the decimal, and a decimal of 15
    digits or fewer is the shortest text of that double (what ``repr`` and every column
    converter read back). The row's value is then the JSON path's, at a third of a Decimal's
    cost through validation, the row and ``raw``. Wider decimals stay exact Decimals.
    """
    bound = 10**precision
    exponent = f"E-{scale}"
    as_float = precision <= FLOAT_DIGITS and scale <= 22
    power: int = 10**scale

    def convert(data: bytes) -> Decimal | float:
        unscaled = int.from_bytes(data, "big", signed=True)
        if not -bound < unscaled < bound:
            raise Unfitting(f"{unscaled}E-{scale} has {len(str(abs(unscaled)))} digits, more "
                            f"than its schema's decimal precision ({precision})")
        if as_float:
            return unscaled / power
        # From text a Decimal is exact whatever the context, and twice as fast to make as
        # by scaleb.
        return Decimal(f"{unscaled}{exponent}")
    return convert


_SECONDS_KEPT = 4096  # texts of whole seconds kept: a stream's events share a few seconds


def _instant(unit: str) -> Convert:
    per_second = {"milliseconds": 1000, "microseconds": 1_000_000}[unit]
    # The fraction in the unit's own digits, as a producer of either precision writes it.
    fraction_text = "{}.{:03d}+00:00" if per_second == 1000 else "{}.{:06d}+00:00"
    seconds_text: dict[int, str] = {}  # seconds since 1970 -> "YYYY-MM-DDTHH:MM:SS"

    def convert(count: int) -> str:
        # RFC 3339 text; the events of one second share its date and time (4x cheaper than
        # making each from its datetime).
        seconds, fraction = divmod(count, per_second)
        text = seconds_text.get(seconds)
        if text is None:
            text = _second_text(seconds, count, unit)
            if len(seconds_text) >= _SECONDS_KEPT:
                seconds_text.clear()
            seconds_text[seconds] = text
        if fraction:
            return fraction_text.format(text, fraction)
        return f"{text}+00:00"
    return convert


def second_text(seconds: int) -> str:
    """A whole second since 1970 as RFC 3339 text without its zone: ``YYYY-MM-DDTHH:MM:SS``
    (raises OverflowError past the years 1 to 9999)."""
    return (_EPOCH + timedelta(seconds=seconds)).isoformat()[:19]


def day_text(days: int) -> str:
    """A day since 1970 as ``YYYY-MM-DD`` (raises OverflowError past the years 1 to 9999)."""
    return (_EPOCH_DAY + timedelta(days=days)).isoformat()


def _second_text(seconds: int, count: int, unit: str) -> str:
    try:
        return second_text(seconds)
    except OverflowError:
        raise Unfitting(f"{count} {unit} since 1970 is past the years 1 to 9999") from None


def _day(days: int) -> str:
    try:
        return day_text(days)
    except OverflowError:
        raise Unfitting(f"{days} days since 1970 is past the years 1 to 9999") from None


def _clock(unit: str) -> Convert:
    def convert(count: int) -> str:
        whole = timedelta(**{unit: count})
        if not timedelta(0) <= whole < timedelta(days=1):
            raise Unfitting(f"{count} {unit} is not a time of day")
        return (datetime.min + whole).time().isoformat()
    return convert


def base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


LOGICAL: dict[tuple[str, str], Convert] = {
    ("long", "timestamp-millis"): _instant("milliseconds"),
    ("long", "timestamp-micros"): _instant("microseconds"),
    ("long", "local-timestamp-millis"): _instant("milliseconds"),
    ("long", "local-timestamp-micros"): _instant("microseconds"),
    ("int", "date"): _day,
    ("int", "time-millis"): _clock("milliseconds"),
    ("long", "time-micros"): _clock("microseconds"),
}


def logical_converter(node: dict[str, Any]) -> Convert | None:
    """The converter of a type with a ``logicalType`` Weir reads, or None (read the type
    underneath)."""
    kind, logical = node.get("type"), node.get("logicalType")
    if logical == "decimal" and kind in ("bytes", "fixed") and "precision" in node:
        return decimal(int(node["precision"]), int(node.get("scale", 0)))
    return LOGICAL.get((str(kind), str(logical)))


def named_types(schema: Any) -> tuple[dict[str, Any], frozenset[str]]:
    """The named types (records, enums, fixed) of a schema by full and by short name, the
    later of two with one short name kept; and the short names two namespaces share at the
    end (a reference by such a name needs its own namespace to resolve)."""
    named: dict[str, Any] = {}
    shared: set[str] = set()

    def walk(node: Any, space: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, space)
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = str(node["name"])
            space = str(node.get("namespace", space)) if "." not in name else \
                name.rpartition(".")[0]
            full = name if "." in name else f"{space}.{name}" if space else name
            short = full.rpartition(".")[2]
            if short in named and named[short] is not node and short != full:
                shared.add(short)
            else:
                shared.discard(short)
            named[full] = named[short] = node
            for field in node.get("fields", []):
                walk(field["type"], space)
        elif isinstance(kind, dict | list):
            walk(kind, space)
        elif kind == "array":
            walk(node["items"], space)
        elif kind == "map":
            walk(node["values"], space)

    walk(schema, "")
    return named, frozenset(shared)
