"""Rollups: per-bucket counts and sums of a target table, kept exactly once with its rows.

The rows a batch really inserts are the ``RETURNING`` of its ``INSERT … ON CONFLICT DO
NOTHING``; the rollup adds exactly those, in the same statement and so the same
transaction as the rows and the offsets. A replay after a crash inserts nothing, so it
adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.core.identifiers import qualified, quote_ident
from processor.core.settings import RollupSettings


@dataclass(frozen=True, slots=True)
class RollupSpec:
    """One rollup table: its bucket, its count column and the columns it sums."""

    schema_name: str
    table: str
    bucket: str
    count_column: str
    sums: tuple[str, ...]

    @classmethod
    def from_settings(cls, schema: str, rollup: RollupSettings) -> RollupSpec:
        """The rollup as declared under ``event_types.<name>.rollups``."""
        return cls(schema, rollup.table, rollup.bucket, rollup.count_column,
                   tuple(rollup.sums))

    @property
    def qualified(self) -> str:
        """The quoted, schema-qualified rollup table."""
        return qualified(self.schema_name, self.table)

    @property
    def columns(self) -> tuple[str, ...]:
        """Its columns in order: bucket, count, sums."""
        return (self.bucket, self.count_column, *self.sums)

    def ddl(self) -> str:
        """``CREATE TABLE`` for the rollup; one row per bucket."""
        lines = [f"{quote_ident(self.bucket)} timestamptz PRIMARY KEY",
                 f"{quote_ident(self.count_column)} bigint NOT NULL"]
        lines += [f"{quote_ident(c)} numeric NOT NULL" for c in self.sums]
        return (f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n  "
                + ",\n  ".join(lines) + "\n)")

    def aggregate(self, source: str) -> str:
        """``INSERT … SELECT`` adding the rows of ``source`` (a table or CTE) to the buckets.

        Buckets are truncated in UTC whatever the session's time zone, and upserted in
        bucket order, so two lanes adding to the same buckets lock them in the same order
        and never deadlock.
        """
        b = quote_ident(self.bucket)
        cols = ", ".join(quote_ident(c) for c in self.columns)
        sums = "".join(f", coalesce(sum({quote_ident(c)}), 0)" for c in self.sums)
        adds = ", ".join(f"{quote_ident(c)} = r.{quote_ident(c)} + EXCLUDED.{quote_ident(c)}"
                         for c in self.columns[1:])
        return (
            f"INSERT INTO {self.qualified} AS r ({cols}) "
            f"SELECT date_trunc('{self.bucket}', event_time, 'UTC'), count(*){sums} "
            f"FROM {source} GROUP BY 1 ORDER BY 1 "
            f"ON CONFLICT ({b}) DO UPDATE SET {adds}"
        )


def with_rollups(insert: str, rollups: tuple[RollupSpec, ...]) -> str:
    """Wrap an ``INSERT`` so every rollup adds the rows it really inserted."""
    if not rollups:
        return insert
    needed = sorted({"event_time", *(c for r in rollups for c in r.sums)})
    returning = ", ".join(quote_ident(c) for c in needed)
    ctes = [f"inserted AS ({insert} RETURNING {returning})"]
    ctes += [f"rollup_{i} AS ({r.aggregate('inserted')})" for i, r in enumerate(rollups[1:])]
    return f"WITH {', '.join(ctes)} {rollups[0].aggregate('inserted')}"
