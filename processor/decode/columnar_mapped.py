"""Mapped columns on the columnar path: a path's value, the key's text, a header's text.

The row path's mapped columns (:mod:`processor.decode.mapped`) find a value per event and
convert it. Here the same values are made for a whole batch at once: a path into the event
as Arrow's nested struct fields, an epoch count as a timestamp with its range checked over
the column, the key's and a header's bytes as text. As the rest of the columnar path, it
is one-sided: what the row path would refuse (a key or header that is not UTF-8 or holds a
NUL, an epoch outside the years 1 to 9999) is not written here but left to the row path,
which dead-letters it with its usual reason and message.

Only the common kinds are compiled; any other mapped column keeps its event type on the
row path, and :func:`mapped_column` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from processor.core.pgtime import FIRST_US, LAST_US, PG_EPOCH_US
from processor.core.records import Header, last_header
from processor.core.settings import MappedColumnSettings
from processor.decode.mapped import EPOCH_UNITS

UTC = pa.timestamp("us", tz="UTC")
# An epoch count's unit as microseconds; a unit finer than that floors, which Arrow's
# integer division (towards zero) does not do alike for counts before 1970.
_MICROS = {unit: multiply for unit, (multiply, divide) in EPOCH_UNITS.items() if divide == 1}

Build = Callable[[pa.Table, Mapping[str, Any]], Any]  # (read rows, made columns) -> column
Fit = Callable[[pa.Table], Any]  # the read rows -> where the row path must decide
# The records' keys and headers -> the column's values and where the row path must decide.
FromRecords = Callable[[Sequence["bytes | None"], Sequence[Sequence[Header]]],
                       tuple[pa.Array, np.ndarray]]


class NotCompiled(Exception):
    """This mapped column is not compiled for the columnar path; the message says why."""


@dataclass(frozen=True)
class MappedBuild:
    """How one mapped column is made by the columnar path."""

    build: Build
    arrow: pa.DataType
    fit: Fit | None = None  # checked after the transforms, as the row path converts then
    from_records: FromRecords | None = None  # its values come from the key or headers


def mapped_column(column: MappedColumnSettings, pg_type: str, schema: Mapping[str, Any]
                  ) -> MappedBuild:
    """The columnar form of mapped ``column`` of an event type of ``schema``; raises
    :class:`NotCompiled`."""
    name = column.name
    if column.default is not None:
        raise NotCompiled(f"column {name!r}: a default")
    if column.source in ("key", "header"):
        if column.path is not None or pg_type != "text" or column.time_unit is not None:
            raise NotCompiled(f"column {name!r}: the {column.source} read as other than text")
        made = _key_texts if column.source == "key" else _header_texts(str(column.header))
        return MappedBuild(lambda t, c: c[name], pa.string(), from_records=made)
    if column.source != "event" or column.path is None or column.time_zone is not None:
        raise NotCompiled(f"column {name!r}: from the record's {column.source}")
    steps = _steps(column)
    leaf = _leaf(schema, steps, name)
    found = types_of(leaf)
    if column.time_unit is not None:
        unit = column.time_unit
        if pg_type != "timestamptz" or found != {"integer"} or unit not in _MICROS:
            raise NotCompiled(f"column {name!r}: {pg_type} from {sorted(found)} in {unit}")
        return _epoch(steps, _MICROS[unit])
    if pg_type == "text" and found == {"string"}:
        return MappedBuild(lambda t, c: walk(t, steps), pa.string())
    if pg_type == "bigint" and found == {"integer"}:
        return MappedBuild(lambda t, c: walk(t, steps), pa.int64())
    if pg_type == "boolean" and found == {"boolean"}:
        return MappedBuild(lambda t, c: walk(t, steps), pa.bool_())
    raise NotCompiled(f"column {name!r}: {pg_type} of {sorted(found)}")


def walk(table: pa.Table, steps: Sequence[str]) -> Any:
    """A path's values: null where a step meets null or a missing key, as the row path's
    walk finds nothing there (a step into a value of another kind is not read by Arrow at
    all: that batch took the row path)."""
    values = table[steps[0]]
    for step in steps[1:]:
        values = pc.struct_field(values, step)  # null where its parent is null
    return values


def _steps(column: MappedColumnSettings) -> list[str]:
    steps = column.steps
    if not steps or not all(isinstance(s, str) for s in steps):
        raise NotCompiled(f"column {column.name!r}: a path with an array index")
    return [str(s) for s in steps]


def _leaf(schema: Mapping[str, Any], steps: Sequence[str], name: str) -> Any:
    """The schema of the path's value; every step before it must be an object's key."""
    node: Any = schema
    for step in steps:
        props = node.get("properties") if isinstance(node, Mapping) else None
        if types_of(node) != {"object"} or not isinstance(props, Mapping) or step not in props:
            raise NotCompiled(f"column {name!r}: its path is not the schema's properties")
        node = props[step]
    return node


def types_of(schema: Any) -> set[str]:
    """The JSON types a schema allows besides null (none for a schema without a type)."""
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    return ({kind} if isinstance(kind, str) else set(kind or [])) - {"null"}


def _epoch(steps: Sequence[str], micros: int) -> MappedBuild:
    """An integer count since 1970 in units of ``micros`` µs, as a timestamp; a count
    outside the years 1 to 9999 (which the row path refuses) is left to the row path."""
    low = -((-(FIRST_US + PG_EPOCH_US)) // micros)  # the first count in range (ceiling)
    high = (LAST_US + PG_EPOCH_US) // micros

    def fit(table: pa.Table) -> Any:
        values = walk(table, steps)
        return pc.or_(pc.less(values, low), pc.greater(values, high))

    def build(table: pa.Table, made: Mapping[str, Any]) -> Any:
        # Only the fitting rows are built: in range, the product cannot overflow.
        return pc.cast(pc.multiply(walk(table, steps), micros), UTC)
    return MappedBuild(build, UTC, fit=fit)


def texts(data: Sequence[bytes | None]) -> tuple[pa.Array, np.ndarray]:
    """Bytes as the row path reads a key or header into a text column (None stays NULL),
    and where it would refuse them: not UTF-8, or a NUL, which text cannot hold."""
    present = [d for d in data if d is not None]
    joined = b"".join(present)
    if joined.isascii() and b"\x00" not in joined:
        return pa.array(data, pa.binary()).cast(pa.string()), np.zeros(len(data), bool)
    out: list[str | None] = []
    refused = np.zeros(len(data), bool)
    for i, d in enumerate(data):
        text = None
        if d is not None:
            try:
                text = d.decode("utf-8")
            except UnicodeDecodeError:
                refused[i] = True
            else:
                if "\x00" in text:
                    refused[i], text = True, None
        out.append(text)
    return pa.array(out, pa.string()), refused


def _key_texts(keys: Sequence[bytes | None], headers: Sequence[Sequence[Header]]
               ) -> tuple[pa.Array, np.ndarray]:
    return texts(keys)


def _header_texts(name: str) -> FromRecords:
    def made(keys: Sequence[bytes | None], headers: Sequence[Sequence[Header]]
             ) -> tuple[pa.Array, np.ndarray]:
        return texts([last_header(record, name) for record in headers])
    return made
