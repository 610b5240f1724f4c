"""``weir migrate``: create Weir's schema, offsets and dead-letter tables, every target table,
rollup and partition function, and evolve the target tables that already exist.

Idempotent and run in one transaction, under an advisory lock so that several replicas
starting together do not race each other. Tables that exist are only altered when their
contract changed, and then with a short ``lock_timeout``: a change that must wait for the
table's lock gives up quickly, so writers never queue behind it, and the whole migration is
tried again. Partitions ahead of time are made after the commit, each in its own short
transaction.
"""

from __future__ import annotations

import asyncpg
import structlog

from processor.contracts import Contract
from processor.core.errors import describe
from processor.core.offsets import OffsetStore
from processor.core.retry import Backoff, retry_transient
from processor.core.settings import Settings
from processor.deadletter.table import ADDED_COLUMNS, DeadLetterTable
from processor.schema.children import ChildSpec
from processor.schema.evolution import (
    Evolution,
    ExistingTable,
    SchemaIncompatible,
    check_rollup,
    evolve_child,
    evolve_target,
    existing_tables,
)
from processor.schema.partitions import premake
from processor.schema.rollups import RollupSpec
from processor.schema.tables import (
    TableSpec,
    child_ddl,
    child_index_ddl,
    index_ddl,
    partition_function_ddl,
    schema_ddl,
    table_spec,
    target_ddl,
)

log = structlog.get_logger(__name__)

# An arbitrary constant: every `weir migrate` of every deployment takes the same lock.
MIGRATION_LOCK = 0x5745_4952
# How long one DDL statement waits for a table lock, and how often the migration is retried.
LOCK_TIMEOUT_MS = 2000
LOCK_ATTEMPTS = 30

__all__ = ["SchemaIncompatible", "behind", "migrate", "missing_tables", "plan"]


async def behind(conn: asyncpg.Connection, settings: Settings,
                 contracts: dict[str, Contract]) -> list[str]:
    """How the existing target tables differ from their contracts (empty: up to date).

    ``weir run`` refuses to start on a table that is behind: its writes would name columns
    or a key the table does not have yet. The dead-letter table counts too.
    """
    specs = {name: table_spec(c, settings) for name, c in contracts.items()}
    existing = await existing_tables(
        conn, settings.postgres.schema_name,
        [t for s in specs.values() for t in (s.name, *(c.name for c in s.children))])
    out = Evolution()
    for name, spec in specs.items():
        if spec.name in existing:
            evolve_target(existing[spec.name], contracts[name], spec, out)
        for child in spec.children:
            if child.name in existing:
                evolve_child(existing[child.name], child, spec, out)
    return await _dead_letters_behind(conn, settings) + out.problems + out.statements


def _shared_ddl(settings: Settings) -> list[str]:
    """The schema, then the tables every consumer group shares: offsets and dead letters."""
    return (schema_ddl(settings) + OffsetStore(settings).ddl()
            + DeadLetterTable(settings).ddl())


async def _dead_letters_behind(conn: asyncpg.Connection, settings: Settings) -> list[str]:
    name = settings.postgres.dead_letter_table
    found = await existing_tables(conn, settings.postgres.schema_name, [name])
    if name not in found:
        return []  # missing_tables names it
    return [f"{name}: no column {column!r} yet" for column in ADDED_COLUMNS
            if column not in found[name].columns]


async def plan(conn: asyncpg.Connection, settings: Settings,
               contracts: dict[str, Contract]) -> list[str]:
    """The statements that bring this database to the configuration; refuse what cannot."""
    schema = settings.postgres.schema_name
    specs = {name: table_spec(c, settings) for name, c in contracts.items()}
    names = [s.name for s in specs.values()] + [r.table for s in specs.values()
                                                for r in s.rollups]
    names += [t for s in specs.values() for c in s.children
              for t in (c.name, *(r.table for r in c.rollups))]
    existing = await existing_tables(conn, schema, names)
    out = Evolution()
    out.statements = _shared_ddl(settings)
    for name, spec in specs.items():
        if spec.name in existing:
            evolve_target(existing[spec.name], contracts[name], spec, out)
            out.statements += index_ddl(spec)  # after any new column it may cover
        else:
            out.statements += target_ddl(contracts[name], spec)
        out.statements += partition_function_ddl(spec)
        _plan_rollups(spec.name, spec.qualified, spec.rollups, existing, out)
        for child in spec.children:
            _plan_child(spec, child, existing, out)
    if out.problems:
        raise SchemaIncompatible(out.problems)
    return out.statements


def _plan_child(spec: TableSpec, child: ChildSpec, existing: dict[str, ExistingTable],
                out: Evolution) -> None:
    """A child table and its rollups: created, or evolved and checked."""
    if child.name in existing:
        evolve_child(existing[child.name], child, spec, out)
        out.statements += child_index_ddl(child)  # after any new column it may cover
    else:
        out.statements += child_ddl(spec, child)
    _plan_rollups(child.name, child.qualified, child.rollups, existing, out)


def _plan_rollups(table: str, qualified_table: str, rollups: tuple[RollupSpec, ...],
                  existing: dict[str, ExistingTable], out: Evolution) -> None:
    """A table's rollups: checked if they exist, else created, and filled from the table's
    rows if it has any."""
    for rollup in rollups:
        if rollup.table in existing:
            check_rollup(existing[rollup.table], rollup, out)
            continue
        out.statements.append(rollup.ddl())
        if table in existing:
            out.statements += _backfill(qualified_table, rollup)


def _backfill(table: str, rollup: RollupSpec) -> list[str]:
    # A new rollup of a table (``table``, qualified) that has rows starts from them. The
    # share lock waits for the writes in flight and holds new ones for the scan, so no row is
    # counted twice or never; stop Weir while adding a rollup, or the old processes keep
    # writing without it.
    return [f"LOCK TABLE {table} IN SHARE MODE", rollup.aggregate(table)]


async def migrate(conn: asyncpg.Connection, settings: Settings,
                  contracts: dict[str, Contract]) -> list[str]:
    """Apply the plan; return the tables that now exist for the configuration."""
    async def apply() -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
            for sql in await plan(conn, settings, contracts):
                await conn.execute(sql)

    def busy(exc: Exception, attempt: int, wait: float) -> None:
        log.warning("a table is busy; trying the migration again", attempt=attempt,
                    error=describe(exc), retry_in_s=round(wait, 2))

    # A lock timeout (a table busy with Weir's writes) is a retry verdict; it is tried on
    # this one connection a bounded number of times, then reported.
    await retry_transient(apply, "migration", Backoff(base_s=0.2, cap_s=2.0),
                          operation="migrate", attempts=LOCK_ATTEMPTS, report=busy)
    for contract in contracts.values():
        spec = table_spec(contract, settings)
        if spec.partitioned:
            await premake(conn, spec)
    tables = [settings.postgres.offsets_table, settings.postgres.dead_letter_table]
    tables += configured_tables(settings)
    log.info("migrated", schema=settings.postgres.schema_name, tables=tables)
    return tables


def configured_tables(settings: Settings) -> list[str]:
    """Target, child and rollup tables of the configuration."""
    return [t for et in settings.event_types.values()
            for t in (et.table, *(r.table for r in et.rollups),
                      *(c.table for c in et.children),
                      *(r.table for c in et.children for r in c.rollups))]


async def missing_tables(conn: asyncpg.Connection, settings: Settings) -> list[str]:
    """Configured tables that do not exist yet (``weir run`` refuses to start without them)."""
    wanted = [settings.postgres.offsets_table, settings.postgres.dead_letter_table]
    wanted += configured_tables(settings)
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
        settings.postgres.schema_name,
    )
    present = {r["table_name"] for r in rows}
    return [t for t in wanted if t not in present]
