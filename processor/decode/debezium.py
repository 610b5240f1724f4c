"""Debezium's change envelope: a change event as an upsert of its row, or a delete of it.

An event type with ``envelope: debezium`` reads the change events Debezium's source
connectors write, JSON with or without the embedded schema (``{"schema": …, "payload":
{…}}`` or the payload alone). The payload's ``op`` says what changed:

- ``c`` (create), ``r`` (a snapshot read) and ``u`` (update): the row is ``after``, checked
  against the contract (which describes the captured table's row) and upserted as any event;
- ``d`` (delete): the row of the primary key in ``before`` is deleted, as a tombstone
  deletes the row of its key;
- ``t`` (truncate) and ``m`` (a logical decoding message) change no row: skipped.

The tombstone Debezium writes after a delete (a null value, for log compaction) changes
nothing either: the table's tombstones are ignored. A primary-key change arrives as a
delete of the old key and a create of the new one, and ends with exactly the new row.

Debezium keys every change by the captured row's primary key, so all changes of one row are
on one partition, in the source's commit order: the table is keyed by the Kafka key and the
offset orders versions, as for any upsert table keyed so; a replayed, older change never
overwrites a newer row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processor.contracts import Contract
from processor.core.errors import EventRejected
from processor.decode.converters import check_text, converter_for, show, why_unfit

UPSERTS = frozenset({"c", "r", "u"})
SKIPPED = frozenset({"t", "m"})


class DebeziumEnvelope:
    """How one event type's change events become upserts and deletes."""

    def __init__(self, contract: Contract, upsert_key: Sequence[str]) -> None:
        types = {c.name: c.pg_type for c in contract.columns}
        self._key = tuple((name, types[name]) for name in upsert_key)

    def change(self, event: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """``("upsert", after)``, ``("delete", before)`` or ``("skip", None)``; raises a
        dead letter for an envelope that is not one."""
        # With the embedded schema the change is under "payload"; without, it is the event.
        payload = event.get("payload") if "op" not in event and "payload" in event else event
        if not isinstance(payload, dict):
            raise _refused(f"its payload is {show(payload)}, not an object")
        op = payload.get("op")
        if op in UPSERTS:
            after = payload.get("after")
            if not isinstance(after, dict):
                raise _refused(f"op {op!r} with 'after' {show(after)}, not an object")
            return "upsert", after
        if op == "d":
            before = payload.get("before")
            if not isinstance(before, dict):
                raise _refused(f"op 'd' with 'before' {show(before)}, not an object")
            return "delete", before
        if op in SKIPPED:
            return "skip", None
        raise _refused(f"'op' is {show(op)}, not one of c, r, u, d, t, m")

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


def _refused(why: str) -> EventRejected:
    return EventRejected("envelope_error", "decode", f"not a Debezium change event: {why}")
