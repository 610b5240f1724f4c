"""Python values to what asyncpg's binary COPY expects for each column type, or :class:`Unfit`.

A value that passed the JSON Schema can still be refused one layer down: asyncpg's binary
encoder raises on a malformed uuid or an integer beyond 64 bits, PostgreSQL's text refuses
NUL, its numeric has limits of its own. Such an error during COPY fails the whole batch, so
every column gets a converter, chosen once per column (:func:`converter_for`), that either
returns a value the column takes or raises :class:`Unfit` naming why. The decoder then
dead-letters that one event with the field's name. ``tests/integration/test_column_fit.py``
holds every converter to a real binary COPY.

Each converter tests the usual valid value first, in as few operations as it can: they run
for every column of every event.

Timestamps become PostgreSQL's own integer (``processor/core/pgtime.py``): the pool's codec packs
it without the per-value time-zone arithmetic of asyncpg's ``datetime`` codec.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from asyncpg.pgproto.pgproto import UUID

from processor.core.errors import describe
from processor.core.pgtime import FIRST_US, LAST_US, aware_micros
from processor.core.text import SURROGATE, printable

Converter = Callable[[Any], Any]

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
# PostgreSQL's numeric: a 16-bit weight of base-10000 digits (131072 decimal digits before
# the point) and a 14-bit display scale (16383 digits after it).
NUMERIC_MAX_ADJUSTED = 131_071
NUMERIC_MAX_SCALE = 16_383
NUL_ESCAPE = b"\\u0000"
# An int, so that `BACKSLASH in data` is one memchr: bytes.find and a bytes needle cost ~3x.
BACKSLASH = 0x5C


class Unfit(ValueError):
    """A value its column cannot hold; the message says why, the decoder adds the field."""


def why_unfit(exc: Exception) -> str:
    """What a failed conversion says: an :class:`Unfit`'s own message, else the error
    described (a transform's value that raised inside a converter), printable."""
    return str(exc) if isinstance(exc, Unfit) else printable(describe(exc))


def show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut short: NUL and surrogates stay escaped."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "an object"}
    return names.get(type(value), f"a {type(value).__name__}")


def _unfit(value: Any, expected: str) -> Unfit:
    return Unfit(f"{show(value)} is {_kind(value)}, not {expected}")


def has_nul_escape(data: bytes) -> bool:
    """True if JSON text ``data`` holds a ``\\u0000`` escape: a NUL in a string or key.

    ``\\\\u0000`` (an escaped backslash, then ``u0000``) is no NUL: an escape starts at an odd
    number of backslashes in a row. The substring test is C and almost always false.
    """
    at = data.find(NUL_ESCAPE)
    while at >= 0:
        start = at
        while start > 0 and data[start - 1] == BACKSLASH:
            start -= 1
        if (at - start) % 2 == 0:
            return True
        at = data.find(NUL_ESCAPE, at + 1)
    return False


def check_text(value: Any) -> str:
    """``value`` if a text column takes it (a str without NUL or unpaired surrogates)."""
    if type(value) is str and "\x00" not in value and (value.isascii()
                                                        or not SURROGATE.search(value)):
        return value
    if type(value) is not str:
        raise _unfit(value, "a string")
    if "\x00" in value:
        raise Unfit(f"{show(value)} holds a NUL character (\\u0000), which PostgreSQL text "
                    "cannot store")
    raise Unfit(f"{show(value)} holds an unpaired surrogate, which is not valid UTF-8")


def _uuid(value: Any) -> UUID:
    # asyncpg's own parser, so exactly what COPY takes (32 hex digits, dashes anywhere); its
    # UUID is then packed as it is, not parsed a second time in the encoder.
    if type(value) is not str:
        raise _unfit(value, "a UUID string")
    try:
        return UUID(value)
    except ValueError:  # UnicodeEncodeError too, for a surrogate
        raise Unfit(f"{show(value)} is not a UUID") from None


def _integer(low: int, high: int, pg_type: str) -> Converter:
    def convert(value: Any) -> int:
        if type(value) is int and low <= value <= high:
            return value
        # An integral float (1.0, or an integer beyond 64 bits, which orjson reads as a
        # float) is an integer to JSON Schema; asyncpg would truncate a fractional one.
        if type(value) is float and value.is_integer() and low <= value <= high:
            return int(value)
        if type(value) is int or (type(value) is float and value.is_integer()):
            raise Unfit(f"{show(value)} is out of range for {pg_type} ({low} .. {high})")
        raise _unfit(value, "an integer")
    convert.__name__ = pg_type
    return convert


def _numeric(value: Any) -> Decimal:
    if type(value) is float:
        if value - value == 0.0:  # false for inf and nan
            # repr of a float is its shortest round-trip form: 19.99 stays 19.99.
            return Decimal(repr(value))
        raise Unfit(f"{show(value)} is not a finite number")
    if type(value) is int:
        return _decimal_fits(Decimal(value), value)
    if type(value) is Decimal or type(value) is str:  # a transform's, or a string override
        try:
            return _decimal_fits(Decimal(value), value)
        except InvalidOperation:
            raise Unfit(f"{show(value)} is not a number") from None
    raise _unfit(value, "a number")


def _decimal_fits(number: Decimal, value: Any) -> Decimal:
    if not number.is_finite():
        raise Unfit(f"{show(value)} is not a finite number")
    if number and number.adjusted() > NUMERIC_MAX_ADJUSTED:
        raise Unfit(f"{show(value)} has more than {NUMERIC_MAX_ADJUSTED + 1} digits before "
                    "the decimal point, over PostgreSQL's numeric limit")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > NUMERIC_MAX_SCALE:
        raise Unfit(f"{show(value)} has more than {NUMERIC_MAX_SCALE} digits after the "
                    "decimal point, over PostgreSQL's numeric limit")
    return number


def _double(value: Any) -> float:
    if type(value) is float and value - value == 0.0:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise Unfit(f"{show(value)} is too large for double precision") from None
    if type(value) is float:
        raise Unfit(f"{show(value)} is not a finite number")
    raise _unfit(value, "a number")


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _unfit(value, "a boolean")


def _jsonb(value: Any) -> bytes:
    try:
        # orjson returns its bytes in a 4 KiB allocation whatever their length; a row holds
        # its jsonb values until the batch commits, so an exact-size copy keeps a row small.
        data = bytes(memoryview(orjson.dumps(value)))
    except orjson.JSONEncodeError as exc:
        raise Unfit(f"cannot be written as JSON: {exc}") from None
    if BACKSLASH in data and has_nul_escape(data):  # memchr: most JSON has no escape
        raise Unfit("holds a NUL character (\\u0000), which PostgreSQL jsonb cannot store")
    return data


def timestamptz_in(zone: tzinfo) -> Converter:
    """An RFC 3339 string as PostgreSQL's timestamptz integer; one without an offset is
    taken in ``zone`` (UTC for every contract column, rather than the server's zone)."""
    def convert(value: Any) -> int:
        if type(value) is not str:
            raise _unfit(value, "a date-time string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise Unfit(f"{show(value)} is not a valid date-time: {exc}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        micros = aware_micros(parsed)
        if FIRST_US <= micros <= LAST_US:
            return micros
        raise Unfit(f"{show(value)} is outside the years 1 to 9999 in UTC")
    return convert


_timestamptz = timestamptz_in(UTC)


def _date(value: Any) -> date:
    if type(value) is not str:
        raise _unfit(value, "a date string")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise Unfit(f"{show(value)} is not a valid date: {exc}") from None


CONVERTERS: dict[str, Converter] = {
    "text": check_text,
    "uuid": _uuid,
    "bigint": _integer(*INT64, "bigint"),
    "integer": _integer(*INT32, "integer"),
    "numeric": _numeric,
    "double precision": _double,
    "boolean": _boolean,
    "jsonb": _jsonb,
    "timestamptz": _timestamptz,
    "date": _date,
}


def array_of(element: Converter, pg_type: str) -> Converter:
    """A JSON array of scalars as a one-dimensional PostgreSQL array: each item converted
    (and checked) as a column of the element type would be; null items stay NULL."""
    def convert(value: Any) -> list[Any]:
        if type(value) is not list:
            raise _unfit(value, f"an array ({pg_type})")
        out: list[Any] = []
        for i, item in enumerate(value):
            if item is None:
                out.append(None)
                continue
            try:
                out.append(element(item))
            except Unfit as exc:
                raise Unfit(f"item [{i}]: {exc}") from None
        return out
    convert.__name__ = pg_type
    return convert


for _element in ("text", "bigint", "numeric", "uuid", "timestamptz"):
    CONVERTERS[f"{_element}[]"] = array_of(CONVERTERS[_element], f"{_element}[]")


def converter_for(pg_type: str) -> Converter:
    """The conversion (and check) a column of ``pg_type`` needs; every mapped type has one."""
    return CONVERTERS[pg_type]

