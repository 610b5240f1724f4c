"""Debezium's change envelope: a change event as an upsert of its row, a delete, or a truncate.

An event type with ``envelope: debezium`` reads the change events Debezium's source
connectors write, JSON with or without the embedded schema (``{"schema": …, "payload":
{…}}`` or the payload alone). The payload's ``op`` says what changed:

- ``c`` (create), ``r`` (a snapshot read) and ``u`` (update): the row is ``after``, checked
  against the contract (which describes the captured table's row) and upserted as any event;
- ``d`` (delete): the row of the primary key in ``before`` is deleted (or, with ``deletes:
  soft``, kept with ``deleted_at`` set);
- ``t`` (truncate): by ``truncates``: nothing, the mirror emptied up to the truncate's
  position, or the mirror stalled until an operator chooses;
- ``m`` (a logical decoding message) changes no row: skipped.

The tombstone Debezium writes after a delete (a null value, for log compaction) changes
nothing either: the table's tombstones are ignored. A primary-key change arrives as a
delete of the old key and a create of the new one, and ends with exactly the new row.

With the embedded schema, the logical-typed values of the row (Debezium's days,
microseconds, decimals as bytes with a scale, JSON as text) are read as their columns take
them (:mod:`processor.core.debezium_types`, which also derives a mirror's contract from
that schema).

Every change carries its *source position*, its place in the source database's log, which
orders the versions of a row whatever Kafka did to them (a topic recreated, a change
replayed): PostgreSQL's ``source.lsn``; MySQL's binlog file and position; else the
source's commit time, ``source.ts_ms``. A mirror's row keeps it (``source_position``), and a
change older than the row changes nothing. The commit time is the row's ``event_time``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processor.contracts import Contract
from processor.core.debezium_types import connect_schema_of_avro, normalize, record_struct
from processor.core.errors import EventRejected
from processor.core.settings import EventTypeSettings
from processor.decode.converters import check_text, converter_for, show, why_unfit

UPSERTS = frozenset({"c", "r", "u"})
MAX_POSITION = 2**63 - 1  # a bigint


@dataclass(frozen=True, slots=True)
class Change:
    """What one change event does: ``upsert`` (``record`` is ``after``), ``delete``
    (``record`` is ``before``), ``truncate`` or ``skip``; with its source position and its
    commit time at the source (ms since 1970; None if it gives none)."""

    what: str
    record: dict[str, Any] | None = None
    position: int = 0
    ts_ms: int | None = None


SKIP = Change("skip")


class ColumnsPending(Exception):
    """A change of a mirror that evolves by itself (``cdc.mirrors``) has fields its table
    has not: its partition waits, uncommitted, while Weir adds the columns (a row written
    now would lose those values, as the source holds them)."""

    def __init__(self, event_type: str, fields: dict[str, Mapping[str, Any]]) -> None:
        super().__init__(f"{event_type}: new fields {sorted(fields)}")
        self.event_type = event_type
        self.fields = fields  # name -> its Connect field schema, from the event


class DebeziumEnvelope:
    """How one event type's change events become upserts, deletes and truncates.

    ``evolving``: a change with a field the contract has not raises
    :class:`ColumnsPending` instead of being written without it."""

    def __init__(self, contract: Contract, settings: EventTypeSettings,
                 evolving: bool = False) -> None:
        types = {c.name: c.pg_type for c in contract.columns}
        self._key = tuple((name, types[name]) for name in settings.upsert_key)
        self._truncates = settings.truncates
        self._event_type = contract.event_type
        self._evolving = evolving
        self._known = frozenset(contract.schema.get("properties", {}))
        # Avro through the registry: every record resolves to the contract's envelope, whose
        # Connect schema types the row (before and after are the same record).
        self._struct = record_struct(connect_schema_of_avro(contract.reader), "after") \
            if contract.registry_type == "AVRO" else None

    def change(self, event: dict[str, Any]) -> Change:
        """What the change event does; raises a dead letter for an envelope that is not
        one."""
        # With the embedded schema the change is under "payload"; without, it is the event.
        embedded = "op" not in event and "payload" in event
        payload = event.get("payload") if embedded else event
        if not isinstance(payload, dict):
            raise _refused(f"its payload is {show(payload)}, not an object")
        op = payload.get("op")
        if op in UPSERTS:
            after = payload.get("after")
            if not isinstance(after, dict):
                raise _refused(f"op {op!r} with 'after' {show(after)}, not an object")
            if embedded:
                struct = _typed(after, event.get("schema"), "after")
                if self._evolving and not after.keys() <= self._known:
                    self._pending(struct)
            elif self._struct is not None:
                normalize(after, self._struct)
            return Change("upsert", after, *_source(payload))
        if op == "d":
            before = payload.get("before")
            if not isinstance(before, dict):
                raise _refused(f"op 'd' with 'before' {show(before)}, not an object")
            if embedded:
                _typed(before, event.get("schema"), "before")
            elif self._struct is not None:
                normalize(before, self._struct)
            return Change("delete", before, *_source(payload))
        if op == "t":
            return SKIP if self._truncates == "ignore" else Change("truncate", None,
                                                                   *_source(payload))
        if op == "m":
            return SKIP
        raise _refused(f"'op' is {show(op)}, not one of c, r, u, d, t, m")

    def vet_writer(self, document: Any) -> None:
        """An Avro writer's envelope (a schema id's, the first time it is met): for a mirror
        that evolves by itself, raise :class:`ColumnsPending` when its ``after`` has fields
        the contract has not. Its events resolve to the contract's reader, which would drop
        those values."""
        if self._evolving:
            self._pending(record_struct(connect_schema_of_avro(document), "after"))

    def _pending(self, struct: Mapping[str, Any] | None) -> None:
        """Raise :class:`ColumnsPending` for the fields of ``struct`` the contract has not
        (a field its schema does not describe cannot be typed: it stays in ``raw``)."""
        fields = struct.get("fields") if struct is not None else None
        if not isinstance(fields, list):
            return
        new: dict[str, Mapping[str, Any]] = {
            f["field"]: f for f in fields
            if isinstance(f, dict) and isinstance(f.get("field"), str)
            and f["field"] not in self._known}
        if new:
            raise ColumnsPending(self._event_type, new)

    def key_values(self, before: dict[str, Any]) -> tuple[Any, ...]:
        """A deleted row's primary key, from ``before``, as its columns hold it."""
        values = []
        for name, pg_type in self._key:
            value = before.get(name)
            if value is None:
                raise _refused(f"op 'd' with no {name!r} in 'before': no row to delete")
            try:
                values.append(check_text(value) if pg_type == "text"
                              else converter_for(pg_type)(value))
            except (ValueError, TypeError, OverflowError) as exc:
                raise _refused(f"op 'd', 'before' field {name!r}: {why_unfit(exc)}") from None
        return tuple(values)


def _typed(record: dict[str, Any], schema: Any, which: str) -> Mapping[str, Any] | None:
    """The record's logical-typed values as its contract reads them, by the embedded schema
    (:mod:`processor.core.debezium_types`); that schema's struct of the record."""
    struct = record_struct(schema, which)
    if struct is not None:
        normalize(record, struct)
    return struct


def _source(payload: dict[str, Any]) -> tuple[int, int | None]:
    """The change's source position and commit time (see the module's docstring)."""
    source = payload.get("source")
    if not isinstance(source, dict):
        raise _refused(f"'source' is {show(source)}, not an object: the change has no place "
                       "in its source's log to order it by")
    ts_ms = source.get("ts_ms")
    ts_ms = ts_ms if type(ts_ms) is int else None
    lsn = source.get("lsn")
    if lsn is not None:
        position, where = lsn, "'source.lsn'"
    elif "file" in source and "pos" in source:
        position, where = _binlog(source.get("file"), source.get("pos")), "the binlog position"
    else:
        position, where = ts_ms, "'source.ts_ms' (it has no lsn, nor binlog file and pos)"
    if type(position) is not int or not 0 <= position <= MAX_POSITION:
        raise _refused(f"{where} is {show(position)}, not a position from 0 to {MAX_POSITION}")
    return position, ts_ms


def _binlog(file: Any, pos: Any) -> int | None:
    """A MySQL binlog file's sequence number (``mysql-bin.000003``) and a position in it as
    one number; None if they are not that."""
    seq = file.rpartition(".")[2] if isinstance(file, str) else ""
    if not seq.isdigit() or not seq.isascii() or type(pos) is not int or not 0 <= pos < 2**32:
        return None
    return (int(seq) << 32) | pos


def _refused(why: str) -> EventRejected:
    return EventRejected("envelope_error", "decode", f"not a Debezium change event: {why}")
