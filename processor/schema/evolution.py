"""Schema evolution: compare a table that exists with what its contract now asks for.

Compatible changes are applied without rewriting the table: a new optional field becomes a
new nullable column (``ADD COLUMN`` without a default is a catalog change only), and a
column whose field is no longer required, or no longer in the schema, drops its
``NOT NULL``. Everything else (a column's type, a new required field, the key or the
partitioning) is refused, naming the table, the column and why: it needs a data migration
that Weir does not guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from processor.contracts import Contract
from processor.core.errors import PermanentError
from processor.core.identifiers import quote_ident
from processor.core.row_layout import META_NAMES
from processor.schema.children import ChildSpec
from processor.schema.partitions import comment_interval
from processor.schema.rollups import RollupSpec
from processor.schema.tables import TableSpec

# format_type() spells some types longer than our DDL does.
_CANONICAL = {"timestamptz": "timestamp with time zone",
              "timestamptz[]": "timestamp with time zone[]"}


class SchemaIncompatible(PermanentError):
    """``weir migrate`` refuses a change; ``problems`` names each table, column and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("incompatible schema change, nothing was changed:\n"
                         + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class ExistingTable:
    """A table as the catalog describes it."""

    name: str
    columns: dict[str, tuple[str, bool]]  # name -> (format_type, NOT NULL)
    key: tuple[str, ...] = ()
    partitioned: bool = False
    interval: str | None = None


@dataclass(slots=True)
class Evolution:
    """What ``weir migrate`` does to existing tables, or refuses to."""

    statements: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def canonical(pg_type: str) -> str:
    """A type as ``format_type`` prints it."""
    return _CANONICAL.get(pg_type, pg_type)


def evolve_target(existing: ExistingTable, contract: Contract, spec: TableSpec,
                  out: Evolution) -> None:
    """Add what a target table lacks, or say why it cannot be changed in place."""
    where = f"table {spec.name}"
    if existing.partitioned != spec.partitioned:
        shape = "partitioned" if existing.partitioned else "not partitioned"
        out.problems.append(
            f"{where}: is {shape}, the configuration asks for partitioning interval "
            f"{spec.interval!r}; changing it needs a copy into a new table")
    elif spec.partitioned and existing.interval not in (None, spec.interval):
        out.problems.append(
            f"{where}: is partitioned by {existing.interval}, the configuration asks for "
            f"{spec.interval}; partitions of both would overlap")
    if existing.key != spec.key:
        out.problems.append(
            f"{where}: its primary key is ({', '.join(existing.key)}), the configuration "
            f"asks for ({', '.join(spec.key)}); a new key needs a new table")
    wanted = {c.name: c for c in contract.columns}
    for column in contract.columns:
        have = existing.columns.get(column.name)
        if have is None:
            if not column.nullable:
                out.problems.append(
                    f"{where}, column {column.name}: a new required field has no value in "
                    "the rows already written; add it as optional (not in 'required') first")
            else:
                out.statements.append(
                    f"ALTER TABLE {spec.qualified} ADD COLUMN IF NOT EXISTS "
                    f"{quote_ident(column.name)} {column.pg_type}")
        elif have[0] != canonical(column.pg_type):
            out.problems.append(
                f"{where}, column {column.name}: type changes from {have[0]} to "
                f"{canonical(column.pg_type)}; written rows and running writers still use "
                "the old type: add a field with a new name instead")
        elif have[1] and column.nullable:
            out.statements.append(_drop_not_null(spec, column.name))
    meta = {*META_NAMES, "ingested_at"}
    out.statements += [
        _drop_not_null(spec, name) for name, (_, not_null) in existing.columns.items()
        if not_null and name not in wanted and name not in meta and name not in spec.key
    ]


def evolve_child(existing: ExistingTable, child: ChildSpec, parent: TableSpec,
                 out: Evolution) -> None:
    """Add the item columns a child table lacks, or say why it cannot be changed in place.

    Its key and partitioning follow its parent's; an item column is always nullable (an
    item may lack the path), so a new one is an ``ADD COLUMN``, as for a target table.
    """
    where = f"child table {child.name}"
    if existing.partitioned != parent.partitioned:
        out.problems.append(f"{where}: is {'' if existing.partitioned else 'not '}partitioned "
                            f"and its parent {parent.name} is "
                            f"{'' if parent.partitioned else 'not '}partitioned; declare the "
                            "child under a new table name")
    if existing.key != child.layout.key:
        out.problems.append(
            f"{where}: its primary key is ({', '.join(existing.key)}), its parent's key and "
            f"index_column make ({', '.join(child.layout.key)}); declare the child under a "
            "new table name")
    for name, pg_type in child.layout.items:
        have = existing.columns.get(name)
        if have is None:
            out.statements.append(f"ALTER TABLE {child.qualified} ADD COLUMN IF NOT EXISTS "
                                  f"{quote_ident(name)} {pg_type}")
        elif have[0] != canonical(pg_type):
            out.problems.append(
                f"{where}, column {name}: type changes from {have[0]} to {canonical(pg_type)}; "
                "map the path to a column with a new name instead")


def check_rollup(existing: ExistingTable, rollup: RollupSpec, out: Evolution) -> None:
    """A rollup's columns may not change: its sums would hold only part of the history."""
    if tuple(existing.columns) != rollup.columns:
        out.problems.append(
            f"rollup table {rollup.table}: has columns ({', '.join(existing.columns)}), the "
            f"configuration asks for ({', '.join(rollup.columns)}); declare a rollup under a "
            "new table name instead")


def _drop_not_null(spec: TableSpec, column: str) -> str:
    return f"ALTER TABLE {spec.qualified} ALTER COLUMN {quote_ident(column)} DROP NOT NULL"


_COLUMNS = """
SELECT c.relname, c.relkind = 'p' AS partitioned, obj_description(c.oid, 'pg_class') AS note,
       a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p')
ORDER BY c.relname, a.attnum
"""
_KEYS = """
SELECT c.relname, array_agg(a.attname ORDER BY k.ord) AS key
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND c.relname = ANY($2::text[])
GROUP BY c.relname
"""


async def existing_tables(conn: asyncpg.Connection, schema: str,
                          names: list[str]) -> dict[str, ExistingTable]:
    """The tables among ``names`` that exist, as the catalog describes them."""
    columns: dict[str, dict[str, tuple[str, bool]]] = {}
    shape: dict[str, tuple[bool, str | None]] = {}
    for r in await conn.fetch(_COLUMNS, schema, names):
        columns.setdefault(r["relname"], {})[r["attname"]] = (r["type"], r["attnotnull"])
        shape[r["relname"]] = (r["partitioned"], comment_interval(r["note"]))
    keys = {r["relname"]: tuple(r["key"]) for r in await conn.fetch(_KEYS, schema, names)}
    return {
        name: ExistingTable(name, cols, keys.get(name, ()), *shape[name])
        for name, cols in columns.items()
    }
