"""Weir's timestamptz codec writes and reads what asyncpg's own codec does, on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg
import pytest

from processor.core.connections import register_codecs
from processor.core.pgtime import kafka_micros, micros
from tests.integration.conftest import PG_DSN

VALUES = [
    datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 11, 25, 10, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30),  # naive: local time, as asyncpg takes it
    date(2026, 11, 25),
    datetime.max,
    datetime.min,
]


@pytest.fixture
async def conns() -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    builtin = await asyncpg.connect(PG_DSN)
    weir = await asyncpg.connect(PG_DSN)
    await register_codecs(weir)
    try:
        yield builtin, weir
    finally:
        await builtin.close()
        await weir.close()


async def test_datetimes_write_and_read_as_with_asyncpg(
    conns: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    builtin, weir = conns
    for value in VALUES:
        want = await builtin.fetchval("SELECT $1::timestamptz::text", value)
        assert await weir.fetchval("SELECT $1::timestamptz::text", value) == want, value
        stored = await builtin.fetchval("SELECT $1::text::timestamptz", want)
        assert await weir.fetchval("SELECT $1::text::timestamptz", want) == stored, value


async def test_the_decoders_integers_are_the_same_instants(
    conns: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    builtin, weir = conns
    await weir.execute("CREATE TEMP TABLE t (a timestamptz, b timestamptz)")
    instant = datetime(2026, 11, 25, 10, 0, 0, 123000, tzinfo=UTC)
    ms = int(instant.timestamp() * 1000)
    await weir.copy_records_to_table("t", records=[(micros(instant), kafka_micros(ms))])
    a, b = await weir.fetchrow("SELECT a::text, b::text FROM t")
    want = await builtin.fetchval("SELECT $1::timestamptz::text", instant)
    assert a == b == want


async def test_other_types_are_refused_as_asyncpg_does(
    conns: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    _, weir = conns
    with pytest.raises(asyncpg.DataError):
        await weir.fetchval("SELECT $1::timestamptz", "2026-11-25")
