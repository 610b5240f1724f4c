"""Table layout derived from contracts and settings: DDL for ``weir migrate``, SQL for writes.

Pure functions and frozen data only, so the shape of every table is unit-testable without a
database.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from processor.contracts import Contract
from processor.core.child_layout import table_key
from processor.core.identifiers import (
    columnar_stage_table,
    qualified,
    quote_ident,
    stage_table,
)
from processor.core.row_layout import META, POSITION, SOURCE_POSITION
from processor.core.row_layout import columns as row_columns
from processor.core.settings import Settings
from processor.schema.children import ChildSpec
from processor.schema.partitions import default_partition_ddl, function_ddl, interval_comment
from processor.schema.rollups import RollupSpec, with_rollups

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1
# A timestamptz from the decoder's integer form (microseconds since 2000-01-01 UTC).
_FROM_MICROS = "(timestamptz '2000-01-01 00:00:00+00' + {} * interval '1 microsecond')"


@dataclass(frozen=True, slots=True)
class TableSpec:
    """Everything the writer needs to know about one target table."""

    event_type: str
    schema_name: str
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    upsert: bool = False
    interval: str = "none"
    premake: int = 0
    retention_days: int | None = None
    rollups: tuple[RollupSpec, ...] = ()
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (method, columns) from config
    version: str | None = None  # upsert: the column that orders versions of one key
    key_types: tuple[str, ...] = ()  # upsert: the PostgreSQL types of the key's columns
    merge: bool = False  # upsert: a null or absent field keeps the stored value
    children: tuple[ChildSpec, ...] = ()  # arrays of its events as tables of their own
    # A mirror's (envelope debezium): a delete keeps the row with deleted_at set.
    soft_delete: bool = False
    # An insert table whose rows the columnar path may write (processor.decode.columnar):
    # no child table, no envelope (whether its columns compile is that path's to say).
    columnar: bool = False
    # The columns that path leaves to PostgreSQL, each with its SQL over ``raw``: a
    # top-level numeric (from the literal the producer wrote) and a jsonb sub-document.
    from_raw: tuple[tuple[str, str], ...] = ()

    @property
    def partitioned(self) -> bool:
        """Range-partitioned on ``event_time``."""
        return self.interval != "none"

    @property
    def time_index(self) -> int:
        """Where ``event_time`` is in a row's values."""
        return len(self.columns) + POSITION["event_time"]

    @property
    def qualified(self) -> str:
        """The quoted, schema-qualified table name."""
        return qualified(self.schema_name, self.name)

    @property
    def stage(self) -> str:
        """The per-connection temporary staging table COPY writes into."""
        return stage_table(self.name)

    def create_stage_sql(self) -> str:
        """A temporary staging table shaped like the target, emptied at every commit."""
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(self.stage)} "
            f"(LIKE {self.qualified} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )

    @property
    def columnar_stage(self) -> str:
        """The per-connection temporary staging table the columnar path's COPY writes into."""
        return columnar_stage_table(self.name)

    @property
    def columnar_columns(self) -> tuple[str, ...]:
        """The columnar stage's columns, in COPY order: the row's, but those from raw."""
        derived = {name for name, _ in self.from_raw}
        return tuple(c for c in self.columns if c not in derived)

    def create_columnar_stage_sql(self) -> str:
        """The columnar stage: the target's types for :attr:`columnar_columns`, emptied at
        every commit."""
        cols = ", ".join(quote_ident(c) for c in self.columnar_columns)
        return (f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(self.columnar_stage)} "
                f"ON COMMIT DELETE ROWS AS SELECT {cols} FROM {self.qualified} LIMIT 0")

    def _source(self, rows: bool, blocks: bool) -> str:
        """What an insert reads: the stage, the columnar stage (with the columns from raw
        made there), or both in Kafka order (so that of two events with one id in a batch,
        the earlier is the one kept, as from the stage alone)."""
        stage = f"pg_temp.{quote_ident(self.stage)}"
        if not blocks:
            return stage
        cols = ", ".join(quote_ident(c) for c in self.columns)
        derived = dict(self.from_raw)
        picked = ", ".join(f"{derived[c]} AS {quote_ident(c)}" if c in derived
                           else quote_ident(c) for c in self.columns)
        columnar = f"SELECT {picked} FROM pg_temp.{quote_ident(self.columnar_stage)}"
        if not rows:
            return f"({columnar}) AS s"
        return (f"(SELECT {cols} FROM {stage} UNION ALL {columnar} "
                "ORDER BY kafka_topic, kafka_partition, kafka_offset) AS s")

    def insert_sql(self, rows: bool = True, blocks: bool = False) -> str:
        """Move the staged rows into the target; replays of written events change nothing.

        Upsert tables keep the latest event per business key, by Kafka offset. Keyed by the
        business key, all its events are in one partition, so the offset orders them. A batch
        may hold several events of one key: ``DISTINCT ON`` keeps the last (PostgreSQL
        refuses to update one row twice in one statement), and the ``WHERE`` lets no replay
        of an older event overwrite a newer one.
        """
        cols = ", ".join(quote_ident(c) for c in self.columns)
        key = ", ".join(quote_ident(c) for c in self.key)
        stage = f"pg_temp.{quote_ident(self.stage)}"
        if not self.upsert:
            return with_rollups(
                f"INSERT INTO {self.qualified} ({cols}) SELECT {cols} FROM "
                f"{self._source(rows, blocks)} ON CONFLICT ({key}) DO NOTHING", self.rollups)
        assert not blocks, "the columnar path writes insert tables only"
        if self.merge:
            return self._merge_sql()
        updates = ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}"
                            for c in (*self.columns, "ingested_at") if c not in self.key)
        order, newer = self._version_order()
        return (
            f"INSERT INTO {self.qualified} AS t ({cols}) "
            f"SELECT DISTINCT ON ({key}) {cols} FROM {stage} "
            f"ORDER BY {key}, {order} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE {newer}"
        )

    def _merge_sql(self) -> str:
        """An upsert that merges: each of the event's own columns takes the newest non-null
        value among the batch's events of its key, or keeps the stored one; Weir's columns
        (``raw``, the Kafka coordinates, ``event_time``) are the newest event's.

        Only the staged events newer than the stored row take part (so a replay, or a late
        older event, changes nothing, as in ``replace``), folded in version order by a
        window per column: the first non-null value when the newest come first. The same
        ``WHERE`` as ``replace`` keeps the row from going backwards.
        """
        key = [quote_ident(c) for c in self.key]
        keys = ", ".join(key)
        stage = f"pg_temp.{quote_ident(self.stage)}"
        _, newer = self._version_order()
        order, stale = self.newer_first("s", "x")
        match = " AND ".join(f"x.{k} = s.{k}" for k in key)
        key_cols = [f"s.{k}" for k in key]
        part = ", ".join(key_cols)
        meta = {m.name for m in META}
        own = [c for c in self.columns if c not in meta and c not in self.key]
        picked = [f"first_value(s.{quote_ident(c)}) OVER (PARTITION BY {part} ORDER BY "
                  f"(s.{quote_ident(c)} IS NULL), {order}) AS {quote_ident(c)}" for c in own]
        rest = [f"s.{quote_ident(c)}" for c in self.columns if c in meta or c in self.key]
        cols = ", ".join(quote_ident(c) for c in (*self.key, *own,
                                                   *(c for c in self.columns if c in meta)))
        select = ", ".join([*key_cols, *picked, *(r for r in rest if r not in key_cols)])
        updates = ", ".join(
            [f"{quote_ident(c)} = coalesce(EXCLUDED.{quote_ident(c)}, t.{quote_ident(c)})"
             for c in own]
            + [f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}"
               for c in (*(c for c in self.columns if c in meta), "ingested_at")])
        return (
            f"INSERT INTO {self.qualified} AS t ({cols}) "
            f"SELECT DISTINCT ON ({part}) {select} FROM {stage} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.qualified} AS x WHERE {match} AND {stale}) "
            f"ORDER BY {part}, {order} "
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates} WHERE {newer}"
        )

    def newer_first(self, s: str, x: str) -> tuple[str, str]:
        """How staged events ``s`` of one key are ranked, newest first, and when the stored
        row ``x`` is as new as one of them or newer (the event then changes nothing): the
        rule of :meth:`_version_order`, with the tables qualified (an output column of the
        same name would win in ``ORDER BY``)."""
        if self.version is not None:
            v = quote_ident(self.version)
            return (f"{s}.{v} DESC, {s}.kafka_offset DESC",
                    f"({x}.{v}, {x}.kafka_offset) >= ({s}.{v}, {s}.kafka_offset)")
        return (f"{s}.kafka_offset DESC", f"{x}.kafka_partition = {s}.kafka_partition AND "
                f"{x}.kafka_offset >= {s}.kafka_offset")

    def delete_sql(self) -> str:
        """Delete the rows of the keys whose last event in a batch is a tombstone (or a
        mirror's delete).

        ``$1 … $n`` are the key columns as arrays, then (a mirror's) the deletes' source
        positions, then the partitions and offsets, then (soft deletes) the event times. The
        same rule as an upsert's: a row written from another partition (the topic was
        repartitioned), or at an earlier offset (a mirror's: an earlier source position),
        goes; a newer row stays, so a delete replayed after a later update deletes nothing.
        A soft delete keeps the row, with ``deleted_at`` and the delete's position, so a
        replayed older change cannot bring it back either.
        """
        n = len(self.key)
        names = [quote_ident(c) for c in self.key]
        arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(self.key_types))
        match = " AND ".join(f"t.{c} = d.{c}" for c in names)
        if self.version is None:
            return (
                f"DELETE FROM {self.qualified} AS t USING unnest({arrays}, ${n + 1}::int[], "
                f"${n + 2}::bigint[]) AS d({', '.join(names)}, p, o) WHERE {match} "
                "AND (t.kafka_partition <> d.p OR t.kafka_offset < d.o)"
            )
        v = quote_ident(self.version)
        newer = f"(t.{v}, t.kafka_offset) < (d.v, d.o)"
        rest = f"${n + 1}::bigint[], ${n + 2}::int[], ${n + 3}::bigint[]"
        if not self.soft_delete:
            return (f"DELETE FROM {self.qualified} AS t USING unnest({arrays}, {rest}) "
                    f"AS d({', '.join(names)}, v, p, o) WHERE {match} AND {newer}")
        return (
            f"UPDATE {self.qualified} AS t SET deleted_at = {_FROM_MICROS.format('d.e')}, "
            f"event_time = {_FROM_MICROS.format('d.e')}, {v} = d.v, kafka_partition = d.p, "
            "kafka_offset = d.o, ingested_at = now() "
            f"FROM unnest({arrays}, {rest}, ${n + 4}::bigint[]) "
            f"AS d({', '.join(names)}, v, p, o, e) WHERE {match} AND {newer}"
        )

    def truncate_sql(self) -> str:
        """A mirror's truncate: ``$1`` its source position; with soft deletes also ``$2``
        and ``$3`` its partition and offset, ``$4`` its event time.

        Every row of an earlier source position goes (or, with soft deletes, is marked
        deleted, taking the truncate's position so that no older change brings it back);
        the changes after the truncate, in the same batch or later, stay.
        """
        assert self.version is not None
        v = quote_ident(self.version)
        if not self.soft_delete:
            return f"DELETE FROM {self.qualified} AS t WHERE t.{v} < $1"
        return (f"UPDATE {self.qualified} AS t SET deleted_at = coalesce(t.deleted_at, "
                f"{_FROM_MICROS.format('$4::bigint')}), {v} = $1, kafka_partition = $2, "
                f"kafka_offset = $3, ingested_at = now() WHERE t.{v} < $1")

    def _version_order(self) -> tuple[str, str]:
        """How the staged events of one key are ranked, and when one replaces the row.

        With ``version``: by the version, ties by offset; an event replaces the row only if
        it is newer by both, so a replay or a late event from another partition never goes
        backwards. Without (keyed by the Kafka key, so one partition orders each key): by
        offset, or any event from another partition (the topic was repartitioned).
        """
        if self.version is not None:
            v = quote_ident(self.version)
            return (f"{v} DESC, kafka_offset DESC",
                    f"(t.{v}, t.kafka_offset) < (EXCLUDED.{v}, EXCLUDED.kafka_offset)")
        return ("kafka_offset DESC",
                "t.kafka_partition <> EXCLUDED.kafka_partition "
                "OR t.kafka_offset < EXCLUDED.kafka_offset")


def table_spec(contract: Contract, settings: Settings) -> TableSpec:
    """The write-side description of one event type's table."""
    et = settings.event_types[contract.event_type]
    schema = settings.postgres.schema_name
    columns = row_columns([c.name for c in contract.columns])
    indexes = tuple((i.method, tuple(i.columns)) for i in et.indexes)
    children = tuple(
        ChildSpec(schema, layout,
                  tuple(RollupSpec.from_settings(schema, r) for r in layout.settings.rollups),
                  tuple((i.method, tuple(i.columns)) for i in layout.settings.indexes))
        for layout in contract.children)
    key = table_key(et, contract.id_field)
    if et.write_mode == "upsert":
        return TableSpec(contract.event_type, schema, et.table, columns, key, upsert=True,
                         indexes=indexes,
                         version=SOURCE_POSITION.name if et.envelope == "debezium"
                         else et.version_field, soft_delete=et.deletes == "soft",
                         merge=et.update_mode == "merge",
                         key_types=tuple(next(c.pg_type for c in contract.columns
                                              if c.name == k) for k in et.upsert_key),
                         children=children)
    columnar = not children and et.envelope == "none"
    return TableSpec(
        contract.event_type, schema, et.table, columns, key, interval=et.interval,
        premake=et.partitioning.premake, retention_days=et.partitioning.retention_days,
        rollups=tuple(RollupSpec.from_settings(schema, r) for r in et.rollups),
        indexes=indexes, children=children, columnar=columnar,
        from_raw=tuple((c.name, from_raw_sql(c.name, c.pg_type)) for c in contract.columns
                       if c.pg_type in ("numeric", "jsonb") and c.mapping is None)
        if columnar else (),
    )


def from_raw_sql(name: str, pg_type: str) -> str:
    """A top-level field's value as PostgreSQL reads it out of ``raw``: a numeric from the
    literal's text (its digits, as the producer wrote them), a jsonb sub-document (a JSON
    null, or no such field, is NULL)."""
    text = name.replace("'", "''")
    if pg_type == "numeric":
        return f"(raw->>'{text}')::numeric"
    return f"NULLIF(raw->'{text}', 'null'::jsonb)"


def target_ddl(contract: Contract, spec: TableSpec) -> list[str]:
    """``CREATE TABLE`` and its indexes for one target table; idempotent."""
    lines = [
        f"{quote_ident(c.name)} {c.pg_type}{'' if c.nullable else ' NOT NULL'}"
        for c in contract.columns
    ]
    lines += [f"{quote_ident(m.name)} {m.ddl}" for m in META]
    lines.append('"ingested_at" timestamptz NOT NULL DEFAULT now()')
    key = ", ".join(quote_ident(c) for c in spec.key)
    lines.append(f"CONSTRAINT {quote_ident(spec.name + '_pkey')} PRIMARY KEY ({key})")
    body = ",\n  ".join(lines)
    partition_by = " PARTITION BY RANGE (event_time)" if spec.partitioned else ""
    ddl = [
        f"CREATE TABLE IF NOT EXISTS {spec.qualified} (\n  {body}\n){partition_by}",
        f"CREATE INDEX IF NOT EXISTS {quote_ident(spec.name + '_event_time_idx')} "
        f"ON {spec.qualified} (event_time)",
    ]
    if spec.partitioned:
        ddl += [
            default_partition_ddl(spec.schema_name, spec.name),
            interval_comment(spec.schema_name, spec.name, spec.interval),
        ]
    return ddl + index_ddl(spec) + [s for child in spec.children
                                    for s in child_ddl(spec, child)]


def child_ddl(spec: TableSpec, child: ChildSpec) -> list[str]:
    """A child table, its default partition and interval if its parent is partitioned, and
    its declared indexes; idempotent."""
    ddl = child.ddl(spec)
    if spec.partitioned:
        ddl += [default_partition_ddl(spec.schema_name, child.name),
                interval_comment(spec.schema_name, child.name, spec.interval)]
    return ddl + child_index_ddl(child)


def child_index_ddl(child: ChildSpec) -> list[str]:
    """A child table's declared indexes; idempotent."""
    return _indexes(child.name, child.qualified, child.indexes)


def index_ddl(spec: TableSpec) -> list[str]:
    """The indexes declared in config, named after their table and columns; idempotent.

    On a partitioned table PostgreSQL builds one on every partition, present and future.
    """
    return _indexes(spec.name, spec.qualified, spec.indexes)


def _indexes(table: str, qualified_name: str,
             indexes: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    ddl = []
    for method, columns in indexes:
        name = f"{table}_{'_'.join(columns)}_{method}_idx"
        if len(name) > MAX_IDENTIFIER:
            # Over 63 bytes PostgreSQL would truncate it, and two indexes could collide.
            name = f"{table[:40]}_{zlib.crc32(name.encode()):08x}_idx"
        cols = ", ".join(quote_ident(c) for c in columns)
        ddl.append(f"CREATE INDEX IF NOT EXISTS {quote_ident(name)} ON {qualified_name} "
                   f"USING {method} ({cols})")
    return ddl


def partition_function_ddl(spec: TableSpec) -> list[str]:
    """The functions that create and drop the table's partitions (none if unpartitioned)."""
    if not spec.partitioned:
        return []
    return function_ddl(spec.schema_name, spec.name, spec.interval, spec.retention_days,
                        tuple(c.name for c in spec.children))


def schema_ddl(settings: Settings) -> list[str]:
    """The PostgreSQL schema that holds every Weir table."""
    return [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(settings.postgres.schema_name)}"]
