"""Tombstones in a batch: which keys end deleted, and the DELETE's arguments.

A batch may hold, for one key, updates and tombstones in any mix. Within a lane a key's
events are in offset order (one partition each), so the last of them decides: a key whose
last event is a tombstone is deleted (its earlier updates in the batch are not written);
a key whose last event is an update is upserted (its earlier tombstones change nothing).
Across batches, the DELETE's own condition keeps a newer row (see ``TableSpec.delete_sql``).

A mirror with soft deletes keeps every update: its delete only marks the row, after the
upsert, so a row created and deleted in one batch is written and marked, as it would be
over two batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processor.core.row_layout import (
    Values,
    event_time_of,
    offset_of,
    partition_of,
    position_of,
)
from processor.schema.tables import TableSpec


def last_per_key(spec: TableSpec, rows: Sequence[Values],
                 stones: Sequence[Values]) -> tuple[list[Values], list[list[Any]]]:
    """The rows still to upsert, and the DELETE's arguments for the keys whose last event is
    a tombstone: one array per key column, then (a mirror's) source positions, partitions
    and offsets, then (soft deletes) event times."""
    where = [spec.columns.index(k) for k in spec.key]
    width = len(spec.key)
    last: dict[Values, tuple[int, bool]] = {}
    for values in rows:
        _later(last, tuple(values[i] for i in where), offset_of(values), False)
    for values in stones:
        _later(last, values[:width], offset_of(values), True)
    kept = list(rows) if spec.soft_delete else [
        v for v in rows if not last[tuple(v[i] for i in where)][1]]
    final = [v for v in stones if last[v[:width]] == (offset_of(v), True)]
    columns: list[list[Any]] = [[v[i] for v in final] for i in range(width)]
    if spec.version is not None:
        columns.append([position_of(v) for v in final])
    coordinates = [[partition_of(v) for v in final], [offset_of(v) for v in final]]
    if spec.soft_delete:
        coordinates.append([event_time_of(v) for v in final])
    return kept, [*columns, *coordinates]


def _later(last: dict[Values, tuple[int, bool]], key: Values, offset: int,
           tombstone: bool) -> None:
    if key not in last or offset > last[key][0]:
        last[key] = (offset, tombstone)
