"""Time partitions of a target table: their names, ranges and the functions that manage them.

A partitioned table is ``PARTITION BY RANGE (event_time)``, one partition per day, week or
month, in UTC, plus a ``DEFAULT`` partition as the last resort. Partitions are created and
dropped only by two functions ``weir migrate`` installs next to the table, owned by the
migration role and ``SECURITY DEFINER``: the runtime role may call them, and so never needs
the right to create or drop a table itself. Each function knows its one table, interval and
retention, written into its body by ``weir migrate`` from the configuration, so a caller can
neither pick another table nor shorten the retention.

The SQL is written by pure functions, unit-tested without a database; :func:`premake`,
the one statement both ``weir migrate`` and the running sink send, runs it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import structlog

from processor.core.identifiers import name_literal, qualified
from processor.core.pgtime import MICROS_PER_DAY, PG_EPOCH_DAY

if TYPE_CHECKING:  # tables.py imports this module
    from processor.schema.tables import TableSpec

STEP = {"day": "1 day", "week": "7 days", "month": "1 month"}
SUFFIX = {"day": "YYYYMMDD", "week": "YYYYMMDD", "month": "YYYYMM"}
# On-demand partitions are made for event times up to this far ahead; a wildly wrong clock
# upstream lands in the default partition instead of creating partitions for years to come.
FUTURE_HORIZON_DAYS = 366
# How long a partition function waits for the table lock before giving up (the caller
# retries): creating or dropping a partition briefly needs the parent's exclusive lock, and
# writers must not queue behind a long wait for it.
LOCK_TIMEOUT = "2s"


def bucket(at: datetime | int, interval: str) -> date:
    """The first UTC day of the partition ``at`` falls in (what ``date_trunc`` computes).

    ``at`` is a datetime, or PostgreSQL's timestamptz integer as the decoder's rows carry it
    (:mod:`processor.core.pgtime`).
    """
    if isinstance(at, int):
        day = PG_EPOCH_DAY + timedelta(days=at // MICROS_PER_DAY)
    else:
        day = at.astimezone(UTC).date()
    if interval == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday, as in SQL
    if interval == "month":
        return day.replace(day=1)
    return day


def bucket_start(day: date) -> datetime:
    """Midnight UTC of ``day``: a time inside the partition that starts that day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def add_function(schema: str, table: str) -> str:
    """The quoted name of the function that makes the partition holding a given time."""
    return qualified(schema, f"{table}_add_partition")


def drop_function(schema: str, table: str) -> str:
    """The quoted name of the function that drops the partitions past retention."""
    return qualified(schema, f"{table}_drop_expired")


def default_partition(table: str) -> str:
    """The name of the table's default partition."""
    return f"{table}_default"


_HEADER = (
    "LANGUAGE plpgsql SECURITY DEFINER\n"
    "SET search_path = pg_catalog, pg_temp\n"
    "SET TimeZone = 'UTC'\n"
    f"SET lock_timeout = '{LOCK_TIMEOUT}'\n"
)


def _cutoff(retention_days: int | None) -> str:
    return "NULL" if retention_days is None else f"now() - interval '{int(retention_days)} days'"


def _tables(table: str, children: tuple[str, ...]) -> str:
    """The table and its children (made and dropped with it) as a SQL text array."""
    return "ARRAY[" + ", ".join(name_literal(t) for t in (table, *children)) + "]::text[]"


def add_partition_sql(schema: str, table: str, interval: str,
                      retention_days: int | None, children: tuple[str, ...] = ()) -> str:
    """``<table>_add_partition(at)``: make the partition holding ``at`` (of the table and
    of each of its child tables); true if it exists.

    False means rows of that range go to the default partition: the range is past retention
    (it would be dropped at once), too far ahead, or the default partition already holds
    rows of it (PostgreSQL then refuses the new partition; they stay where they are).
    """
    s, t = name_literal(schema), name_literal(table)
    return f"""CREATE OR REPLACE FUNCTION {add_function(schema, table)}(at timestamptz)
RETURNS boolean
{_HEADER}AS $weir$
DECLARE
  lo timestamptz := date_trunc('{interval}', at);
  hi timestamptz := date_trunc('{interval}', at) + interval '{STEP[interval]}';
  suffix text := '_p' || to_char(date_trunc('{interval}', at), '{SUFFIX[interval]}');
  cutoff timestamptz := {_cutoff(retention_days)};
  tbl text;
BEGIN
  IF hi <= cutoff OR lo > now() + interval '{FUTURE_HORIZON_DAYS} days' THEN
    RETURN false;
  END IF;
  -- One maker per table at a time, so two lanes asking for the same day do not race.
  PERFORM pg_advisory_xact_lock(hashtext({s} || '.' || {t}));
  FOREACH tbl IN ARRAY {_tables(table, children)} LOOP
    IF to_regclass(format('%I.%I', {s}, tbl || suffix)) IS NULL THEN
      EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                     {s}, tbl || suffix, {s}, tbl, lo, hi);
    END IF;
  END LOOP;
  RETURN true;
EXCEPTION
  -- check_violation: the default partition already holds rows of this range;
  -- invalid_object_definition: the range overlaps a partition of another interval.
  WHEN check_violation OR invalid_object_definition THEN
    RETURN false;
END
$weir$"""


def drop_expired_sql(schema: str, table: str, retention_days: int | None,
                     children: tuple[str, ...] = ()) -> str:
    """``<table>_drop_expired()``: drop partitions wholly older than the retention, of the
    table and of each of its child tables.

    Rows of that age in the default partitions are deleted too. Returns the table's
    partitions dropped; without a retention it does nothing.
    """
    s, t = name_literal(schema), name_literal(table)
    header = f"CREATE OR REPLACE FUNCTION {drop_function(schema, table)}()\nRETURNS integer\n"
    if retention_days is None:
        return header + f"{_HEADER}AS $weir$\nBEGIN\n  RETURN 0;\nEND\n$weir$"
    return header + f"""{_HEADER}AS $weir$
DECLARE
  cutoff timestamptz := {_cutoff(retention_days)};
  part record;
  tables text[] := {_tables(table, children)};
  defaults text[] := {_tables(default_partition(table),
                              tuple(default_partition(c) for c in children))};
  tbl text;
  dropped integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext({s} || '.' || {t}));
  FOR i IN 1 .. cardinality(tables) LOOP
    tbl := tables[i];
    FOR part IN
      SELECT c.relname,
             (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                           'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = format('%I.%I', {s}, tbl)::regclass
    LOOP
      IF part.upper IS NOT NULL AND part.upper <= cutoff THEN
        EXECUTE format('DROP TABLE %I.%I', {s}, part.relname);
        dropped := dropped + (tbl = {t})::integer;
      END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %I.%I WHERE event_time < %L', {s}, defaults[i], cutoff);
  END LOOP;
  RETURN dropped;
END
$weir$"""


def function_ddl(schema: str, table: str, interval: str,
                 retention_days: int | None, children: tuple[str, ...] = ()) -> list[str]:
    """Both functions, callable only by roles granted ``EXECUTE`` (see roles.sql)."""
    return [
        add_partition_sql(schema, table, interval, retention_days, children),
        drop_expired_sql(schema, table, retention_days, children),
        f"REVOKE ALL ON FUNCTION {add_function(schema, table)}(timestamptz) FROM PUBLIC",
        f"REVOKE ALL ON FUNCTION {drop_function(schema, table)}() FROM PUBLIC",
    ]


def premake_sql(schema: str, table: str, interval: str) -> str:
    """Make the current partition and ``$1`` more ahead; returns how many could not be made."""
    return (
        f"SELECT count(*) FILTER (WHERE NOT ok) FROM (SELECT "
        f"{add_function(schema, table)}(now() + g * interval '{STEP[interval]}') AS ok "
        "FROM generate_series(0, $1::integer) AS g) AS made"
    )


def default_partition_ddl(schema: str, table: str) -> str:
    """The last-resort partition for rows no range partition takes."""
    return (f"CREATE TABLE IF NOT EXISTS {qualified(schema, default_partition(table))} "
            f"PARTITION OF {qualified(schema, table)} DEFAULT")


def interval_comment(schema: str, table: str, interval: str) -> str:
    """Record the interval on the table, so a later ``weir migrate`` can tell a change."""
    return f"COMMENT ON TABLE {qualified(schema, table)} IS 'weir: partitioned by {interval}'"


def comment_interval(comment: str | None) -> str | None:
    """The interval a table's comment records, if Weir wrote it."""
    prefix = "weir: partitioned by "
    if comment is None or not comment.startswith(prefix):
        return None
    return comment.removeprefix(prefix)


# A connection of its own (``weir migrate``) or one lent by the pool.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
log = structlog.get_logger(__name__)


async def premake(conn: Connection, spec: TableSpec) -> None:
    """Make the current partition and ``spec.premake`` more ahead of time."""
    refused = await conn.fetchval(premake_sql(spec.schema_name, spec.name, spec.interval),
                                  spec.premake)
    if refused:
        log.warning("some partitions ahead could not be made; their rows go to the default "
                    "partition", table=spec.name, refused=refused)
