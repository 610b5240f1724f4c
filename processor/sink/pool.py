"""The writers' asyncpg pool: each connection with the codecs and its staging tables."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from processor.core.connections import postgres_client, register_codecs
from processor.core.settings import Settings
from processor.schema.tables import TableSpec


async def create_pool(settings: Settings, specs: Iterable[TableSpec]) -> asyncpg.Pool:
    """The writers' pool; each new connection gets the codec and its staging tables."""
    pg = settings.postgres
    stage_sql = [sql for spec in specs for sql in (
        spec.create_stage_sql(), *(c.create_stage_sql() for c in spec.children),
        *((spec.create_columnar_stage_sql(),) if spec.columnar and settings.pipeline.columnar
          else ()))]

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
