"""Partitions at run time: made ahead of time, made on demand before a batch, dropped past
retention.

Everything goes through the functions ``weir migrate`` installed (see
:mod:`processor.schema.partitions`), so the runtime role never creates or drops a table
itself. Creating a partition takes the parent table's lock for a moment, so it is never done
inside a batch transaction (which would hold that lock until its commit, with other lanes
queued behind it), but just before, in its own short transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import asyncpg
import structlog

from processor.core.records import Block
from processor.core.retry import unless_fatal
from processor.core.tasks import pause
from processor.schema.partitions import (
    Connection,
    add_function,
    bucket,
    bucket_start,
    drop_function,
    premake,
)
from processor.schema.tables import TableSpec
from processor.sink.columnar_copy import block_days

log = structlog.get_logger(__name__)


async def drop_expired(conn: Connection, spec: TableSpec) -> int:
    """Drop the partitions past retention; return how many."""
    dropped: int = await conn.fetchval(
        f"SELECT {drop_function(spec.schema_name, spec.name)}()")
    if dropped:
        log.info("dropped expired partitions", table=spec.name, partitions=dropped,
                 retention_days=spec.retention_days)
    return dropped


async def maintain(pool: asyncpg.Pool, specs: Iterable[TableSpec]) -> None:
    """One maintenance pass over every partitioned table."""
    async with pool.acquire() as conn:
        for spec in specs:
            if spec.partitioned:
                await premake(conn, spec)
                await drop_expired(conn, spec)


async def maintain_forever(pool: asyncpg.Pool, specs: Sequence[TableSpec],
                           interval_s: float) -> None:
    """The owned background task: :func:`maintain` every ``interval_s`` until cancelled."""
    while True:
        await pause(interval_s)
        try:
            await maintain(pool, specs)
        except Exception as exc:  # noqa: BLE001 - unless_fatal re-raises a fatal one
            # A busy table, a database away, a revoked privilege: the next pass tries
            # again, and the premade partitions ahead leave plenty of room until then.
            unless_fatal(exc, "partition maintenance failed; trying again next interval")


class PartitionGuard:
    """Makes sure every row of a batch has its partition before the batch is written.

    Remembers the ranges it has seen made (or sent to the default partition on purpose),
    so the usual batch, all of it inside today's partition, costs two passes over its event
    times and no query.
    """

    def __init__(self, specs: Mapping[str, TableSpec]) -> None:
        self._specs = {name: spec for name, spec in specs.items() if spec.partitioned}
        self._known: dict[str, set[date]] = {name: set() for name in self._specs}

    def missing(self, event_type: str, records: Sequence[tuple[Any, ...]],
                blocks: Sequence[Block] = ()) -> set[date]:
        """The partition ranges (first days) of ``records`` and ``blocks`` not known to be
        in place."""
        spec = self._specs.get(event_type)
        if spec is None or not (records or blocks):
            return set()
        i, known = spec.time_index, self._known[event_type]
        times = [t for b in blocks for t in b.event_times]
        if records:
            times += (min(r[i] for r in records), max(r[i] for r in records))
        lo, hi = bucket(min(times), spec.interval), bucket(max(times), spec.interval)
        if lo == hi and lo in known:
            return set()
        found = {bucket(r[i], spec.interval) for r in records}
        for block in blocks:
            found |= {bucket(t, spec.interval) for t in block_days(block)}
        return found - known

    async def ensure(self, pool: asyncpg.Pool, rows: Mapping[str, Sequence[tuple[Any, ...]]],
                     blocks: Mapping[str, Sequence[Block]] | None = None) -> None:
        """Make the partitions ``rows`` and ``blocks`` need; they are in place when this
        returns."""
        blocks = blocks or {}
        wanted = {name: days for name in {*rows, *blocks}
                  if (days := self.missing(name, rows.get(name, ()), blocks.get(name, ())))}
        if not wanted:
            return
        async with pool.acquire() as conn:
            for name, days in wanted.items():
                spec = self._specs[name]
                for day in sorted(days):
                    made = await conn.fetchval(
                        f"SELECT {add_function(spec.schema_name, spec.name)}($1)",
                        bucket_start(day))
                    if not made:
                        log.info("rows go to the default partition", table=spec.name,
                                 range_start=day.isoformat())
                    self._known[name].add(day)
