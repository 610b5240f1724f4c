"""``weir migrate``: create Weir's schema, offsets and dead-letter tables and every target table.

Idempotent (``IF NOT EXISTS`` throughout) and run in one transaction, under an advisory lock
so that several replicas starting together do not race each other.
"""

from __future__ import annotations

import asyncpg
import structlog

from processor.contracts import Contract
from processor.settings import Settings
from processor.sink.tables import dead_letter_ddl, offsets_ddl, schema_ddl, table_spec, target_ddl

log = structlog.get_logger(__name__)

# An arbitrary constant: every `weir migrate` of every deployment takes the same lock.
MIGRATION_LOCK = 0x5745_4952


def migration_statements(settings: Settings, contracts: dict[str, Contract]) -> list[str]:
    """Every DDL statement, in order."""
    statements = schema_ddl(settings) + offsets_ddl(settings) + dead_letter_ddl(settings)
    for contract in contracts.values():
        statements += target_ddl(contract, table_spec(contract, settings))
    return statements


async def migrate(conn: asyncpg.Connection, settings: Settings,
                  contracts: dict[str, Contract]) -> list[str]:
    """Apply the statements; return the tables that now exist for the configuration."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        for sql in migration_statements(settings, contracts):
            await conn.execute(sql)
    tables = [settings.postgres.offsets_table, settings.postgres.dead_letter_table]
    tables += [settings.event_types[name].table for name in contracts]
    log.info("migrated", schema=settings.postgres.schema_name, tables=tables)
    return tables


async def missing_tables(conn: asyncpg.Connection, settings: Settings) -> list[str]:
    """Configured tables that do not exist yet (``weir run`` refuses to start without them)."""
    wanted = [settings.postgres.offsets_table, settings.postgres.dead_letter_table]
    wanted += [et.table for et in settings.event_types.values()]
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
        settings.postgres.schema_name,
    )
    present = {r["table_name"] for r in rows}
    return [t for t in wanted if t not in present]
