"""Each column type's converter: what it returns for values that fit, and why it refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from asyncpg.pgproto.pgproto import UUID

from processor.contracts import ALLOWED_OVERRIDES
from processor.core.errors import EventRejected
from processor.core.pgtime import aware_micros, kafka_micros_or_none, micros
from processor.core.text import printable
from processor.decode.converters import (
    CONVERTERS,
    NUMERIC_MAX_SCALE,
    Unfit,
    check_text,
    converter_for,
    has_nul_escape,
    show,
)
from processor.decode.rawjson import check_raw, nul_place

UUID_TEXT = "3a09a5cf-26cc-4de1-bb3a-9cc1e98eb8b5"


def test_every_column_type_has_a_converter() -> None:
    assert set(CONVERTERS) == ALLOWED_OVERRIDES


@pytest.mark.parametrize(
    ("pg_type", "value", "expected"),
    [
        ("text", "plain", "plain"),
        ("text", "é \U0010ffff", "é \U0010ffff"),
        ("uuid", UUID_TEXT, UUID(UUID_TEXT)),
        ("uuid", UUID_TEXT.upper(), UUID(UUID_TEXT)),
        ("uuid", UUID_TEXT.replace("-", ""), UUID(UUID_TEXT)),  # asyncpg's parser takes it
        ("bigint", 2**63 - 1, 2**63 - 1),
        ("bigint", -(2**63), -(2**63)),
        ("bigint", 3.0, 3),  # JSON Schema's integer: 3.0 is one
        ("integer", -(2**31), -(2**31)),
        ("numeric", 19.99, Decimal("19.99")),
        ("numeric", 2**64 - 1, Decimal(2**64 - 1)),
        ("numeric", "1e-16383", Decimal("1e-16383")),
        ("numeric", Decimal("9e131071"), Decimal("9e131071")),
        ("double precision", 1e308, 1e308),
        ("double precision", 2**64, float(2**64)),
        ("boolean", False, False),
        ("date", "2024-02-29", date(2024, 2, 29)),
        ("date", "9999-12-31", date(9999, 12, 31)),
        ("timestamptz", "2026-11-25T10:00:00Z", micros(datetime(2026, 11, 25, 10, tzinfo=UTC))),
        ("timestamptz", "2026-11-25T10:00:00", micros(datetime(2026, 11, 25, 10, tzinfo=UTC))),
        # The real first and last instants, not the infinities pgtime.micros makes of
        # datetime.min and datetime.max (asyncpg's convention for datetimes).
        ("timestamptz", "0001-01-01T00:00:00Z", -63_082_281_600_000_000),
        ("timestamptz", "9999-12-31T23:59:59.999999+00:00", 252_455_615_999_999_999),
    ],
)
def test_values_that_fit(pg_type: str, value: Any, expected: Any) -> None:
    converted = converter_for(pg_type)(value)
    assert converted == expected
    assert type(converted) is type(expected)


def test_jsonb_is_the_exact_json_bytes() -> None:
    assert converter_for("jsonb")({"a": [1, "\\u0000"]}) == b'{"a":[1,"\\\\u0000"]}'


@pytest.mark.parametrize(
    ("pg_type", "value", "why"),
    [
        ("text", "a\x00b", "'a\\x00b' holds a NUL character"),
        ("text", "a\ud800", "holds an unpaired surrogate"),
        ("text", 5, "5 is an integer, not a string"),
        ("text", ["a"], "['a'] is an array, not a string"),
        ("uuid", "not-a-uuid", "'not-a-uuid' is not a UUID"),
        ("uuid", "{" + UUID_TEXT + "}", "is not a UUID"),
        ("uuid", UUID_TEXT[:-1] + "g", "is not a UUID"),
        ("uuid", UUID_TEXT[:-1] + "\ud800", "is not a UUID"),
        ("uuid", 12, "12 is an integer, not a UUID string"),
        ("bigint", 2**63, "9223372036854775808 is out of range for bigint"),
        ("bigint", -(2**63) - 1, "is out of range for bigint"),
        ("bigint", 1.8446744073709552e19, "1.8446744073709552e+19 is out of range for bigint"),
        ("bigint", True, "True is a boolean, not an integer"),
        ("bigint", 1.5, "1.5 is a number, not an integer"),
        ("bigint", "12", "'12' is a string, not an integer"),
        ("integer", 2**31, "2147483648 is out of range for integer"),
        ("numeric", float("inf"), "inf is not a finite number"),
        ("numeric", float("nan"), "nan is not a finite number"),
        ("numeric", "NaN", "'NaN' is not a finite number"),
        ("numeric", "abc", "'abc' is not a number"),
        ("numeric", "1e-16384", f"more than {NUMERIC_MAX_SCALE} digits after"),
        ("numeric", "1e131072", "more than 131072 digits before"),
        ("numeric", False, "False is a boolean, not a number"),
        ("double precision", float("inf"), "inf is not a finite number"),
        ("double precision", 10**400, "is too large for double precision"),
        ("double precision", True, "True is a boolean, not a number"),
        ("boolean", 1, "1 is an integer, not a boolean"),
        ("boolean", "true", "'true' is a string, not a boolean"),
        ("jsonb", {"a": "\x00"}, "holds a NUL character"),
        ("jsonb", {"a": "\ud800"}, "cannot be written as JSON"),
        ("jsonb", 2**64, "cannot be written as JSON"),
        ("date", "0000-01-01", "'0000-01-01' is not a valid date: year 0 is out of range"),
        ("date", "2024-02-30", "day is out of range for month"),
        ("date", 20240101, "20240101 is an integer, not a date string"),
        ("timestamptz", "0000-01-01T00:00:00Z", "year 0 is out of range"),
        ("timestamptz", "10000-01-01T00:00:00Z", "is not a valid date-time"),
        ("timestamptz", "2016-12-31T23:59:60Z", "second must be in 0..59"),
        ("timestamptz", 1_764_064_800, "is an integer, not a date-time string"),
        # PostgreSQL takes both, but in UTC they are in the years 0 and 10000.
        ("timestamptz", "0001-01-01T00:00:00+14:00", "outside the years 1 to 9999 in UTC"),
        ("timestamptz", "9999-12-31T23:59:59-14:00", "outside the years 1 to 9999 in UTC"),
    ],
)
def test_values_that_do_not_fit_say_why(pg_type: str, value: Any, why: str) -> None:
    with pytest.raises(Unfit) as info:
        converter_for(pg_type)(value)
    assert why in str(info.value)


def test_check_text_returns_the_value_itself() -> None:
    value = "x" * 10
    assert check_text(value) is value


def test_show_cuts_long_values_and_keeps_escapes() -> None:
    assert show("\x00") == "'\\x00'"
    assert len(show("x" * 500)) == 60
    assert show("x" * 500).endswith("...")


@pytest.mark.parametrize(
    ("text", "nul"),
    [
        (b'"\\u0000"', True),
        (b'"\\\\u0000"', False),  # an escaped backslash, then the letters u0000
        (b'"\\\\\\u0000"', True),  # an escaped backslash, then a NUL
        (b'"\\\\\\\\u0000"', False),
        (b'"\\\\u0000 \\u0000"', True),  # the second one counts
        (b'"u0000"', False),
        (b'"\\u00000"', True),
    ],
)
def test_nul_escape_counts_the_backslashes(text: bytes, nul: bool) -> None:
    assert has_nul_escape(text) is nul
    assert ("\x00" in orjson.loads(text)) is nul  # what orjson reads agrees


@pytest.mark.parametrize(
    ("event", "place"),
    [
        ({"a": "x\x00"}, "field 'a'"),
        ({"a": {"b": ["ok", "\x00"]}}, "field 'a.b[1]'"),
        ({"k\x00": 1}, "a key ('k\\x00') in the top-level object"),
        ({"a": [{"k\x00": 1}]}, "a key ('k\\x00') in field 'a[0]'"),
    ],
)
def test_nul_place_names_the_field(event: dict[str, Any], place: str) -> None:
    assert nul_place(event) == place
    raw = orjson.dumps(event)
    with pytest.raises(EventRejected) as info:
        check_raw(raw, orjson.loads(raw))
    assert info.value.reason == "conversion_error"
    assert str(info.value).startswith(place)


def test_raw_without_nul_passes() -> None:
    raw = b'{"a": "\\\\u0000", "b": "\\n", "c": 1e-300}'
    check_raw(raw, orjson.loads(raw))


def test_printable_escapes_what_text_cannot_hold() -> None:
    assert printable("plain é") == "plain é"
    assert printable("a\x00b\ud800") == "a\\x00b\\ud800"


def test_kafka_time_is_none_outside_the_years_1_to_9999() -> None:
    assert kafka_micros_or_none(0) == micros(datetime(1970, 1, 1, tzinfo=UTC))
    assert kafka_micros_or_none(-62_135_596_800_000) == aware_micros(datetime(1, 1, 1, tzinfo=UTC))
    assert kafka_micros_or_none(9_000_000_000_000_000) is None
    assert kafka_micros_or_none(-62_135_596_800_001) is None
    assert kafka_micros_or_none(None) is None
