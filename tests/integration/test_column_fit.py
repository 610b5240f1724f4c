"""Whatever a column's converter returns, a real binary COPY into that column type takes.

For every PostgreSQL type Weir maps a schema property to, hypothesis throws edge values at
the decoder's converter (what orjson can produce, and what a transform could): the converter
either refuses with :class:`Unfit` (the decoder's ``conversion_error``) or returns a value
that asyncpg's binary COPY, with the pool's own codecs, writes into a temporary column of
that type and reads back unchanged. Any other exception fails the test: it would have
escaped into COPY and failed a whole batch. The ``raw`` jsonb column gets the same treatment
for the bytes the decoder lets through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.contracts import ALLOWED_OVERRIDES
from processor.core.connections import register_codecs
from processor.core.errors import EventRejected
from processor.core.pgtime import ONE_US, PG_EPOCH
from processor.decode.converters import Unfit, converter_for
from processor.decode.mapped import epoch_converter, zoned_converter
from processor.decode.rawjson import check_raw
from tests.integration.conftest import PG_DSN

pytestmark = pytest.mark.integration

EXAMPLES = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Characters that matter one layer down: NUL, both kinds of lone surrogate, a pair's halves
# adjacent, the last code point, and anything else.
odd_chars = st.sampled_from(["\x00", "\ud800", "\udfff", "\U0010ffff", "\ufeff", "é", "\\"])
texts = st.text(st.characters(min_codepoint=0) | odd_chars, max_size=40)
ints = st.integers(-(2**70), 2**70) | st.sampled_from(
    [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1])
floats = st.floats() | st.sampled_from([float(2**63), -float(2**63), 2.0**31, 5e-324, 1e308])
scalars = st.none() | st.booleans() | ints | floats | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(texts, inner, max_size=4), max_leaves=10)
exponents = st.integers(-20_000, 140_000)
decimals = st.builds(lambda m, e: f"{m}e{e}", st.integers(-(10**20), 10**20), exponents)
hex_uuid = st.uuids().map(str)
offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439))

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "text": texts | scalars,
    "uuid": (hex_uuid | hex_uuid.map(str.upper) | st.uuids().map(lambda u: u.hex)
             | hex_uuid.map(lambda u: "{" + u + "}") | hex_uuid.map(lambda u: u[:-1] + "\x00")
             | hex_uuid.map(lambda u: u[:-1] + "\ud800") | hex_uuid.map(lambda u: u[:-1] + "g")
             | st.text("0123456789abcdef-", min_size=30, max_size=38) | scalars),
    "bigint": st.integers(-(2**63), 2**63 - 1) | scalars,
    "integer": st.integers(-(2**31), 2**31 - 1) | scalars,
    "numeric": (scalars | decimals | st.decimals(allow_nan=True, allow_infinity=True)
                | st.decimals(allow_nan=False).map(str) | st.sampled_from(
                    ["NaN", "-Infinity", "1e-16383", "1e-16384", "9e131071", "1e131072",
                     "12,5", " 1.5 ", "1_000"])),
    "double precision": scalars | decimals | st.integers(-(2**1100), 2**1100),
    "boolean": st.booleans() | scalars,
    "jsonb": json_values,
    "date": (st.dates().map(date.isoformat) | st.builds(
        "{:04d}-{:02d}-{:02d}".format, st.integers(0, 10_000), st.integers(0, 13),
        st.integers(0, 32)) | scalars),
    "timestamptz": (st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat)
                    | st.sampled_from(["0000-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                                       "9999-12-31T23:59:59.999999-14:00",
                                       "2016-12-31T23:59:60Z", "2024-02-30T10:00:00Z"])
                    | scalars),
}
STRATEGIES |= {f"{t}[]": st.lists(STRATEGIES[t], max_size=5) | scalars | st.lists(
    st.lists(STRATEGIES[t], max_size=2), max_size=2)
    for t in ("text", "bigint", "numeric", "uuid", "timestamptz")}
# Read back as what the converter returned; a timestamptz as PostgreSQL's own integer, the
# converter's own form.
READ_BACK = {
    "timestamptz": "((extract(epoch FROM v) * 1000000)::bigint - 946684800000000)",
    "timestamptz[]": "coalesce((SELECT array_agg((extract(epoch FROM x) * 1000000)::bigint "
                     "- 946684800000000 ORDER BY n) FROM unnest(v) WITH ORDINALITY AS u(x, n)),"
                     " '{}')",
}


class Column:
    """A temporary one-column table on one connection, on a loop of its own."""

    def __init__(self, pg_type: str) -> None:
        self.pg_type = pg_type
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(self._connect())
        self.read = f"DELETE FROM fit RETURNING {READ_BACK.get(pg_type, 'v')}"

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(PG_DSN)
        await register_codecs(conn)
        await conn.execute(f"CREATE TEMP TABLE fit (v {self.pg_type})")
        return conn

    def copy(self, value: Any) -> Any:
        """COPY ``value`` in (binary, as the writer does) and return what the column holds."""
        async def go() -> Any:
            await self.conn.copy_records_to_table("fit", records=[(value,)], columns=["v"])
            return await self.conn.fetchval(self.read)
        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


@pytest.fixture(params=sorted(STRATEGIES))
def column(request: pytest.FixtureRequest) -> Iterator[Column]:
    col = Column(request.param)
    try:
        yield col
    finally:
        col.close()


def exact(value: Any) -> Any:
    """A JSON value with its numbers as the decimals their text says: jsonb keeps that
    (``4.852953746707209e+16`` reads back as ``48529537467072090``)."""
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def same(pg_type: str, stored: Any, converted: Any) -> bool:
    """Did the column keep the converted value exactly?"""
    if pg_type == "jsonb":
        return bool(exact(stored) == exact(orjson.loads(converted)))
    if pg_type == "uuid":
        return str(stored) == str(converted)
    if pg_type == "uuid[]":
        return [None if s is None else str(s) for s in stored] == [
            None if c is None else str(c) for c in converted]
    return bool(stored == converted)


def test_every_mapped_type_is_tested() -> None:
    assert set(STRATEGIES) == ALLOWED_OVERRIDES


def test_a_converted_value_fits_its_column(column: Column) -> None:
    convert = converter_for(column.pg_type)
    fitted: list[Any] = []

    @EXAMPLES
    @given(STRATEGIES[column.pg_type])
    def check(value: Any) -> None:
        try:
            converted = convert(value)
        except Unfit:
            return  # the decoder dead-letters the event: conversion_error
        stored = column.copy(converted)
        assert same(column.pg_type, stored, converted), (value, converted, stored)
        fitted.append(value)

    check()
    assert fitted  # not everything refused: the property said something


json_texts = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from(["\x00", "\\"]),
                     max_size=40)
# JSON text pieces for the raw column: escapes jsonb refuses or takes, and plain values.
raw_pieces = st.sampled_from([
    '"\\u0000"', '"\\\\u0000"', '"\\\\\\u0000"', '"a\\u0000b"', '"\\ud800"', '"\\udc00"',
    '"\\ud83d\\ude00"', '"\\uffff"', '"\\n\\t\\/"', "1e308", "1e-300", "-0.0", "0e400",
    "18446744073709551616", "-9223372036854775809", "123456789012345678901234567890",
    "true", "null", "[]", "{}", '{"\\u0000": 1}', '{"k\\\\u0000": 1}',
    ]) | st.recursive(  # what orjson writes: integers within 64 bits, no lone surrogates
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | floats | json_texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_texts, inner, max_size=4),
    max_leaves=10).map(lambda v: orjson.dumps(v).decode(errors="replace"))


def test_raw_bytes_the_decoder_passes_fit_jsonb() -> None:
    column = Column("jsonb")
    fitted: list[bytes] = []

    @EXAMPLES
    @given(st.lists(raw_pieces, min_size=1, max_size=6))
    def check(pieces: list[str]) -> None:
        raw = ("{" + ", ".join(f'"f{i}": {p}' for i, p in enumerate(pieces)) + "}").encode()
        try:
            event = orjson.loads(raw)
            check_raw(raw, event)
        except (orjson.JSONDecodeError, EventRejected):
            return  # decode_error or conversion_error: dead-lettered, never copied
        assert exact(column.copy(raw)) == exact(event)
        fitted.append(raw)

    try:
        check()
    finally:
        column.close()
    assert fitted  # not everything refused: the property said something
    # ...and not only plain text: some passed event had a backslash escape in it.
    assert any(b"\\" in raw for raw in fitted), "no escaped text reached the column"


def test_the_first_and_last_instants_weir_takes_are_stored_as_such() -> None:
    column = Column("timestamptz")
    try:
        for text, instant in (
            ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
            ("9999-12-31T23:59:59.999999Z", datetime.max.replace(tzinfo=UTC)),
        ):
            converted = converter_for("timestamptz")(text)
            assert converted == (instant - PG_EPOCH) // ONE_US
            assert column.copy(converted) == converted
    finally:
        column.close()


def test_numeric_limits_are_postgresql_s() -> None:
    column = Column("numeric")
    try:
        for text in ("1e-16383", "9e131071"):
            assert column.copy(converter_for("numeric")(text)) == Decimal(text)
        for text in ("1e-16384", "1e131072"):
            with pytest.raises(Unfit):
                converter_for("numeric")(text)
    finally:
        column.close()


MAPPED_TIMES: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    unit: (epoch_converter(unit), ints | floats | scalars | st.sampled_from(
        [253402300799, 253402300800, -62135596800, -62135596801, 1.5, -0.5, 1e300]))
    for unit in ("seconds", "milliseconds", "microseconds", "nanoseconds")
} | {"zoned": (zoned_converter("America/New_York"), STRATEGIES["timestamptz"] | st.sampled_from(
    ["9999-12-31T23:59:59", "0001-01-01T00:00:00", "2026-03-08T02:30:00",
     "2026-11-01T01:30:00"]))}


@pytest.mark.parametrize("kind", sorted(MAPPED_TIMES))
def test_a_mapped_time_fits_timestamptz(kind: str) -> None:
    # The epoch and zoned converters of mapped columns: what they return, a real binary COPY
    # writes and reads back unchanged; everything else is Unfit (a dead letter).
    convert, values = MAPPED_TIMES[kind]
    column = Column("timestamptz")
    fitted: list[Any] = []

    @EXAMPLES
    @given(values)
    def check(value: Any) -> None:
        try:
            converted = convert(value)
        except Unfit:
            return
        assert column.copy(converted) == converted, (value, converted)
        fitted.append(value)

    try:
        check()
    finally:
        column.close()
    assert fitted
