"""The asyncpg pool: connection settings, the jsonb codec and the staging tables."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
import orjson

from processor import pgtime
from processor.connections import postgres_client
from processor.schema.tables import TableSpec
from processor.settings import Settings

JSONB_VERSION = b"\x01"


def _encode_jsonb(value: bytes | str) -> bytes:
    # jsonb's binary form is a version byte and the JSON text: raw Kafka bytes pass as they are.
    return JSONB_VERSION + (value if isinstance(value, bytes) else value.encode())


def _decode_jsonb(data: bytes) -> object:
    return orjson.loads(data[1:])


async def register_codecs(conn: asyncpg.Connection) -> None:
    """jsonb in binary, taking bytes we already hold instead of re-encoding them; timestamptz
    taking the integers the decoder builds (``processor/pgtime.py``)."""
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "timestamptz", encoder=pgtime.encode, decoder=pgtime.decode, schema="pg_catalog",
        format="binary",
    )


async def connect(settings: Settings) -> asyncpg.Connection:
    """One connection for commands (migrate, lag)."""
    pg = settings.postgres
    conn: asyncpg.Connection = await asyncpg.connect(
        pg.dsn, **postgres_client(pg), server_settings={"application_name": "weir"},
    )
    await register_codecs(conn)
    return conn


async def create_pool(settings: Settings, specs: Iterable[TableSpec]) -> asyncpg.Pool:
    """The writers' pool; each new connection gets the codec and its staging tables."""
    pg = settings.postgres
    stage_sql = [spec.create_stage_sql() for spec in specs]

    async def init(conn: asyncpg.Connection) -> None:
        await register_codecs(conn)
        for sql in stage_sql:
            await conn.execute(sql)

    pool = await asyncpg.create_pool(
        pg.dsn, **postgres_client(pg), min_size=1, max_size=pg.pool_size, init=init,
        server_settings={
            "application_name": "weir",
            "statement_timeout": str(pg.statement_timeout_ms),
        },
    )
    assert pool is not None
    return pool
