"""``weir check-event``: the verdict the pipeline would give one record, without Kafka or
PostgreSQL.

The record goes through the very decoder ``weir run`` builds (``app.py``), called as the
decode stage calls it (``decode/stage.py``): ``decode_framed`` for a topic in a registry
format, ``decode`` otherwise, ``tombstone`` for a record without a value. A schema id not
fetched yet is fetched once and the record decoded again. The answer is a row (the table's
columns in COPY order, values as the decoder built them), *filtered* (a transform dropped
the event), or a dead letter with its reason, stage and message.

What is not the event's fault is never a dead letter here either: a topic the config does
not read, or a schema registry that does not answer, raises :class:`CheckRefused`, which
the command turns into exit 2.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import orjson

from processor.contracts import Contract
from processor.core.child_layout import ChildLayout
from processor.core.errors import EventRejected, describe
from processor.core.pgtime import INFINITY, NEG_INFINITY, ONE_US, PG_EPOCH
from processor.core.records import Delete, Header, Truncate
from processor.core.row_layout import META_NAMES, META_TYPES, SOURCE_POSITION
from processor.core.settings import Settings
from processor.decode.decoder import Decoded, Decoder
from processor.decode.framed import SchemaPending
from processor.registry.parse import schema_book
from processor.schema.tables import table_spec

if TYPE_CHECKING:
    from processor.transform.chain import Chain

# The fixed coordinates a checked record is given: it was never in a partition.
PARTITION = 0
OFFSET = 0

Kind = Literal["row", "filtered", "dead_letter"]


class CheckRefused(Exception):
    """The record cannot be checked (an unknown topic, the registry away): not its fault."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the row: its name, PostgreSQL type and value as the decoder built it."""

    name: str
    pg_type: str
    value: Any


@dataclass(frozen=True, slots=True)
class EventVerdict:
    """What the pipeline would do with the record."""

    verdict: Kind
    event_type: str | None = None
    table: str | None = None
    columns: tuple[Column, ...] = ()
    reason: str | None = None
    stage: str | None = None
    message: str | None = None
    # Per child table: its rows (each its columns), None where an absent array keeps the
    # stored items (update_mode merge).
    children: tuple[tuple[str, tuple[tuple[Column, ...], ...] | None], ...] = ()

    @property
    def exit_code(self) -> int:
        """0 for a row or a filtered event, 1 for a dead letter."""
        return 1 if self.verdict == "dead_letter" else 0

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready values (``orjson.dumps`` takes them as they are)."""
        if self.verdict == "dead_letter":
            return {"verdict": self.verdict, "reason": self.reason, "stage": self.stage,
                    "message": self.message}
        if self.verdict == "filtered":
            return {"verdict": self.verdict, "event_type": self.event_type,
                    "table": self.table}
        out = {"verdict": self.verdict, "event_type": self.event_type, "table": self.table,
               "columns": _as_json(self.columns)}
        if self.children:
            out["children"] = {table: None if rows is None else [_as_json(r) for r in rows]
                               for table, rows in self.children}
        return out

    def to_json(self) -> str:
        """One JSON object: see :meth:`as_dict`."""
        return orjson.dumps(self.as_dict()).decode()

    def render(self) -> str:
        """The verdict for a person: the row's columns one per line, or why it is refused."""
        if self.verdict == "dead_letter":
            return f"dead letter: {self.reason} ({self.stage})\n  {self.message}"
        if self.verdict == "filtered":
            return "filtered: a transform dropped the event"
        lines = [f"row: {self.table}"]
        lines += [f"  {c.name} = {text_value(c.pg_type, c.value)}" for c in self.columns]
        for table, rows in self.children:
            if rows is None:
                lines.append(f"child rows: {table}: the array is absent; the stored items stay")
                continue
            lines.append(f"child rows: {table} ({len(rows)})")
            lines += ["  " + ", ".join(f"{c.name} = {text_value(c.pg_type, c.value)}"
                                       for c in row) for row in rows]
        return "\n".join(lines)


def _as_json(columns: Sequence[Column]) -> dict[str, Any]:
    return {c.name: json_value(c.pg_type, c.value) for c in columns}


def _timestamp(value: int) -> str:
    """A timestamptz integer (microseconds since 2000-01-01 UTC) as ISO 8601."""
    if value == INFINITY:
        return "infinity"
    if value == NEG_INFINITY:
        return "-infinity"
    return (PG_EPOCH + value * ONE_US).isoformat()


def _decimal(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    raise TypeError(f"{type(value).__name__} is not JSON")


def _compact(data: bytes) -> bytes:
    """A jsonb value's JSON on one line, numbers digit for digit (raw is the value as it
    came, whitespace and newlines included; PostgreSQL's jsonb drops them too)."""
    try:
        return orjson.dumps(json.loads(data, parse_float=Decimal), default=_decimal)
    except (ValueError, TypeError):  # an integer past 64 bits: orjson cannot write it
        return b" ".join(data.split())


def json_value(pg_type: str, value: Any) -> Any:
    """A row value as JSON: times as ISO 8601, jsonb as its JSON, numerics exact."""
    if value is None:
        return None
    if pg_type == "timestamptz" and type(value) is int:
        return _timestamp(value)
    if pg_type == "jsonb" and isinstance(value, bytes | bytearray | memoryview):
        return orjson.Fragment(_compact(bytes(value)))
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))  # its digits as a JSON number, exact
    if isinstance(value, UUID | date):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    return value


def text_value(pg_type: str, value: Any) -> str:
    """A row value for a person: text quoted (so a blank or a "null" shows), null bare."""
    if value is None:
        return "null"
    if pg_type == "jsonb" and isinstance(value, bytes | bytearray | memoryview):
        return _compact(bytes(value)).decode("utf-8", errors="backslashreplace")
    shown = json_value(pg_type, value)
    if isinstance(shown, orjson.Fragment):  # a Decimal: its digits
        return format(value, "f")
    if isinstance(shown, str) and type(value) is str:
        return orjson.dumps(shown).decode()
    if isinstance(shown, str):  # a time, a date, a uuid
        return shown
    return orjson.dumps(shown).decode()


def _columns(settings: Settings, contract: Contract, values: Sequence[Any],
             tombstone: bool, truncate: bool = False) -> tuple[Column, ...]:
    """The row's values under their column names (a tombstone's: its upsert key's; a
    mirror's truncate: its source position)."""
    types = {c.name: c.pg_type for c in contract.columns} | dict(META_TYPES)
    et = settings.event_types[contract.event_type]
    # A mirror's delete and truncate carry its source position (row_layout lays them out).
    position = (SOURCE_POSITION.name,) if et.envelope == "debezium" else ()
    if truncate:
        names: tuple[str, ...] = (*position, *META_NAMES)
    elif tombstone:
        names = (*et.upsert_key, *position, *META_NAMES)
    else:
        names = table_spec(contract, settings).columns
    if len(names) != len(values):  # the layout is row_layout's: a mismatch is our bug
        raise RuntimeError(f"a row of {len(values)} values for the {len(names)} columns "
                           f"{list(names)}")
    return tuple(Column(n, types.get(n, "text"), v) for n, v in zip(names, values,
                                                                     strict=True))


def _rejected(exc: EventRejected) -> EventVerdict:
    return EventVerdict("dead_letter", reason=exc.reason, stage=exc.stage, message=str(exc))


def _internal(exc: Exception) -> EventVerdict:
    # As the decode stage does: a decoder bug met by one input dead-letters that event.
    return EventVerdict("dead_letter", reason="internal_error", stage="decode",
                        message=describe(exc))


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def check_event(
    settings: Settings, contracts: dict[str, Contract], transforms: Mapping[str, Chain | None],
    topic: str, value: bytes | None, key: bytes | None = None,
    headers: Sequence[Header] = (), timestamp_ms: int | None = None,
) -> EventVerdict:
    """The pipeline's verdict on one record of ``topic`` (``value`` None: a tombstone).

    The record is at partition 0, offset 0, with ``timestamp_ms`` as its Kafka timestamp
    (default: now). Raises :class:`CheckRefused` for a topic the config does not read or a
    schema registry that does not answer.
    """
    configured = [t.name for t in settings.topics]
    if topic not in configured:
        raise CheckRefused(f"topic {topic!r} is not in the config; its topics are "
                           f"{', '.join(configured)}")
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    decoder = Decoder(settings, contracts, transforms, schema_book(settings))
    framed = decoder.is_framed(topic)
    decode = decoder.decode_framed if framed else decoder.decode

    def once() -> Decoded | None:
        if value is None:
            return decoder.tombstone(topic, PARTITION, OFFSET, timestamp_ms, key)
        return decode(topic, PARTITION, OFFSET, timestamp_ms, value, headers, key)

    try:
        decoded = once()
    except SchemaPending as pending:
        await _fetch(settings, decoder, pending.schema_id)
        try:
            decoded = once()
        except EventRejected as exc:
            return _rejected(exc)
        except Exception as exc:  # noqa: BLE001 - as the stage: a dead letter, not a crash
            return _internal(exc)
    except EventRejected as exc:
        return _rejected(exc)
    except Exception as exc:  # noqa: BLE001 - as the stage: a dead letter, not a crash
        return _internal(exc)
    if decoded is None:
        # The topic's event type; a topic routed by a field does not say which was dropped.
        event_type = next(t.event_type for t in settings.topics if t.name == topic)
        table = settings.event_types[event_type].table if event_type else None
        return EventVerdict("filtered", event_type, table)
    event_type, values = decoded[0], decoded[1]
    contract = contracts[event_type]
    extra = decoded[2] if len(decoded) == 3 else ()  # child rows; a tombstone has none
    deletes = value is None or isinstance(extra, Delete)  # a tombstone, a Debezium delete
    truncates = isinstance(extra, Truncate)
    children = () if isinstance(extra, Delete | Truncate) else tuple(
        (layout.table, None if rows is None else tuple(_child_columns(layout, r) for r in rows))
        for layout, rows in zip(contract.children, extra, strict=True))
    return EventVerdict("row", event_type, settings.event_types[event_type].table,
                        _columns(settings, contract, values, deletes, truncates),
                        children=children)


def _child_columns(layout: ChildLayout, row: Sequence[Any]) -> tuple[Column, ...]:
    """A staged child row under its table's column names (without the record it came from,
    which the table does not keep)."""
    types = layout.types()
    return tuple(Column(n, types[n], v) for n, v in zip(layout.stage_columns, row, strict=True)
                 if n in layout.columns)


async def _fetch(settings: Settings, decoder: Decoder, schema_id: int) -> None:
    """Fetch ``schema_id`` once; a registry that does not answer is :class:`CheckRefused`."""
    registry = settings.schema_registry
    # Two requests (the schema, its subjects), each bounded by the client's timeout; the
    # bound here only guards against a retry loop, which without stalls there is not.
    bound = 2 * registry.timeout_s + 1
    try:
        await asyncio.wait_for(decoder.fetch_schema(schema_id, None), bound)
    except TimeoutError:
        raise CheckRefused(f"the schema registry {registry.url} did not answer for schema id "
                           f"{schema_id} within {bound:g}s") from None
    except Exception as exc:  # noqa: BLE001 - infrastructure, whatever it is, is not the event's
        raise CheckRefused(_one_line(
            f"cannot fetch schema id {schema_id} from the schema registry {registry.url}: "
            f"{exc}")) from None
