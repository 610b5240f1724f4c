"""Child tables: their DDL and the statements that keep them equal to their parents' events.

A child table (``event_types.<name>.children``) holds one row per item of an array of its
parent's events, keyed by the parent's key and the item's position
(:mod:`processor.core.child_layout`). It is written in the parent's batch transaction,
from a staging table of its own, and always from the *event the parent's row holds*, so
the two never disagree:

- **insert tables**: after the parent's ``INSERT … ON CONFLICT DO NOTHING``, the staged
  items whose record is the one the parent's row was written from are inserted, also doing
  nothing on conflict. A replay, or a second event with the same id, adds nothing.
- **upsert tables**: before the parent's upsert, while its stored row still tells which
  staged events are newer, the children of every key that has a newer event are deleted
  and the items of its newest event inserted: an update with fewer items leaves exactly
  its items. With ``update_mode: merge`` only events that carry the array count (an absent
  array keeps the stored items, as an absent field keeps its column). A tombstone that
  deletes the parent's row deletes its children.

A partitioned parent's children are partitioned the same way, on the same ``event_time``;
the parent's partition functions make and drop both (:mod:`processor.schema.partitions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processor.core.child_layout import ORIGIN, ChildLayout
from processor.core.identifiers import qualified, quote_ident, stage_table
from processor.schema.rollups import RollupSpec, with_rollups

if TYPE_CHECKING:  # tables.py imports this module
    from processor.schema.tables import TableSpec


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """Everything the writer and ``weir migrate`` need to know about one child table."""

    schema_name: str
    layout: ChildLayout
    rollups: tuple[RollupSpec, ...] = ()
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def name(self) -> str:
        """The child table's name."""
        return self.layout.table

    @property
    def qualified(self) -> str:
        """The quoted, schema-qualified table name."""
        return qualified(self.schema_name, self.name)

    @property
    def stage(self) -> str:
        """The per-connection temporary staging table its COPY writes into."""
        return stage_table(self.name)

    @property
    def stage_columns(self) -> tuple[str, ...]:
        """The staged columns, in the order the decoder builds a child row."""
        return self.layout.stage_columns

    def create_stage_sql(self) -> str:
        """The staging table (with the item's record, which the child table does not keep)."""
        types = self.layout.types()
        cols = ", ".join(f"{quote_ident(c)} {types[c]}" for c in self.stage_columns)
        return (f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(self.stage)} ({cols}) "
                "ON COMMIT DELETE ROWS")

    def ddl(self, parent: TableSpec) -> list[str]:
        """``CREATE TABLE`` for the child (partitioned as its parent); idempotent."""
        types = self.layout.types()
        item_names = {name for name, _ in self.layout.items}
        lines = [f"{quote_ident(c)} {types[c]}{'' if c in item_names else ' NOT NULL'}"
                 for c in self.layout.columns]
        key = ", ".join(quote_ident(c) for c in self.layout.key)
        lines.append(f"CONSTRAINT {quote_ident(self.name + '_pkey')} PRIMARY KEY ({key})")
        body = ",\n  ".join(lines)
        by = " PARTITION BY RANGE (event_time)" if parent.partitioned else ""
        return [f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n  {body}\n){by}"]

    @staticmethod
    def _record(parent: TableSpec) -> tuple[str, ...]:
        """The columns that name a staged item's event: the parent's key and its record."""
        return (*parent.key, *(c for c in ORIGIN if c not in parent.key))

    def _cols(self, prefix: str = "") -> str:
        return ", ".join(prefix + quote_ident(c) for c in self.layout.columns)

    def _staged(self) -> str:
        return f"pg_temp.{quote_ident(self.stage)}"

    def insert_sql(self, parent: TableSpec) -> str:
        """An insert table's children: the staged items of the events whose rows the
        parent's insert wrote (or a replay of them), each row once."""
        match = " AND ".join(f"p.{quote_ident(c)} = s.{quote_ident(c)}"
                             for c in self._record(parent))
        key = ", ".join(quote_ident(c) for c in self.layout.key)
        return with_rollups(
            f"INSERT INTO {self.qualified} ({self._cols()}) SELECT {self._cols('s.')} "
            f"FROM {self._staged()} AS s JOIN {parent.qualified} AS p ON {match} "
            f"ON CONFLICT ({key}) DO NOTHING", self.rollups)

    def _newest(self, parent: TableSpec, carriers: bool) -> str:
        """Per parent key, the record of its newest staged event that is newer than the
        stored row (the same rule as the parent's upsert); ``carriers``: only among the
        events whose record is in ``$1 … $3`` (those that carry the array)."""
        keys = ", ".join(f"s.{quote_ident(c)}" for c in parent.key)
        origin = ", ".join(f"s.{c}" for c in ORIGIN if c not in parent.key)
        order, stale = parent.newer_first("s", "x")
        match = " AND ".join(f"x.{quote_ident(c)} = s.{quote_ident(c)}" for c in parent.key)
        carried = ("JOIN unnest($1::text[], $2::integer[], $3::bigint[]) AS c(t, p, o) "
                   "ON (s.kafka_topic, s.kafka_partition, s.kafka_offset) = (c.t, c.p, c.o) "
                   if carriers else "")
        return (f"SELECT DISTINCT ON ({keys}) {keys}, {origin} "
                f"FROM pg_temp.{quote_ident(parent.stage)} AS s {carried}"
                f"WHERE NOT EXISTS (SELECT 1 FROM {parent.qualified} AS x WHERE {match} "
                f"AND {stale}) ORDER BY {keys}, {order}")

    def replace_sql(self, parent: TableSpec) -> tuple[str, str]:
        """An upsert table's children: delete those of every key with a newer event, then
        insert that event's items. Both run before the parent's upsert, with the same
        arguments (none; with ``update_mode: merge``, the carriers' topics, partitions and
        offsets as three arrays)."""
        newest = self._newest(parent, parent.merge)
        key = " AND ".join(f"c.{quote_ident(k)} = n.{quote_ident(k)}" for k in parent.key)
        delete = f"DELETE FROM {self.qualified} AS c USING ({newest}) AS n WHERE {key}"
        match = " AND ".join(f"n.{quote_ident(c)} = s.{quote_ident(c)}"
                             for c in self._record(parent))
        insert = (f"INSERT INTO {self.qualified} ({self._cols()}) SELECT {self._cols('s.')} "
                  f"FROM {self._staged()} AS s JOIN ({newest}) AS n ON {match}")
        return delete, insert

    def orphans_sql(self, parent: TableSpec) -> str:
        """After the parent's tombstone deletes: the children of the deleted keys (``$1 …
        $n`` the key columns as arrays, as the parent's delete takes them) whose parent row
        is gone."""
        names = [quote_ident(c) for c in parent.key]
        arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(parent.key_types))
        match = " AND ".join(f"c.{c} = d.{c}" for c in names)
        kept = " AND ".join(f"t.{c} = d.{c}" for c in names)
        return (f"DELETE FROM {self.qualified} AS c USING unnest({arrays}) AS d("
                f"{', '.join(names)}) WHERE {match} AND NOT EXISTS (SELECT 1 FROM "
                f"{parent.qualified} AS t WHERE {kept})")
