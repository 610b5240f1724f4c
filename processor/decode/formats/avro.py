"""Avro: one record's payload, read with the schema it was written with, as a JSON-shaped event.

fastavro reads the binary record with the writer's schema (the one its id names), so every
field the producer wrote is in the event, and in ``raw``; the contract then picks its
columns as for JSON. The values are those a JSON producer would have sent (see
``docs/formats.md``): times as ISO 8601 strings, a uuid as its text, bytes as base64, a
decimal as an exact number.

fastavro is asked for the plain values underneath the logical types (the schema it reads
with has its ``logicalType`` annotations taken out), and each logical value is converted
here by a converter compiled once per schema, for just the fields that have one: a
fastavro ``datetime`` or ``UUID`` would only be turned back into text, at twice the cost.
This is also where what fastavro lets through and a sink must not is refused: a decimal
with more digits than its precision (fastavro's own reader rounds it to the precision,
silently: 123456789012345.67 in a decimal(12, 2) reads as 1.23456789012E+14), a time past
the year 9999, and trailing bytes after the record (the value is not one record).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro
import orjson

from processor.core.errors import EventRejected
from processor.decode.formats import SchemaMismatch
from processor.registry.avro_contract import avro_problems, reader_defaults

Convert = Callable[[Any], Any]

# What fastavro raises on bytes that do not match the schema: a short read, a bad varint or
# union/enum index, text that is not UTF-8, a length past the end.
_UNREADABLE = (EOFError, ValueError, IndexError, KeyError, OverflowError, StopIteration,
               TypeError, UnicodeDecodeError, MemoryError)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string",
                         "bytes"})


class Unfitting(ValueError):
    """A logical value no column can hold (a decimal past its precision, a time past 9999);
    ``path`` names the field, outermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _decimal(precision: int, scale: int) -> Convert:
    bound = 10**precision

    exponent = f"E-{scale}"

    def convert(data: bytes) -> Decimal:
        unscaled = int.from_bytes(data, "big", signed=True)
        if not -bound < unscaled < bound:
            raise Unfitting(f"{unscaled}E-{scale} has {len(str(abs(unscaled)))} digits, more "
                            f"than its schema's decimal precision ({precision})")
        # From text a Decimal is exact whatever the context, and twice as fast to make as
        # by scaleb.
        return Decimal(f"{unscaled}{exponent}")
    return convert


_SECONDS_KEPT = 4096  # texts of whole seconds kept: a stream's events share a few seconds


def _instant(unit: str) -> Convert:
    per_second = {"milliseconds": 1000, "microseconds": 1_000_000}[unit]
    to_micros = 1_000_000 // per_second
    seconds_text: dict[int, str] = {}  # seconds since 1970 -> "YYYY-MM-DDTHH:MM:SS"

    def convert(count: int) -> str:
        # The text datetime.isoformat() gives; the events of one second share its text
        # (4x cheaper than making each from its datetime).
        seconds, fraction = divmod(count, per_second)
        text = seconds_text.get(seconds)
        if text is None:
            text = _second_text(seconds, count, unit)
            if len(seconds_text) >= _SECONDS_KEPT:
                seconds_text.clear()
            seconds_text[seconds] = text
        if fraction:
            return f"{text}.{fraction * to_micros:06d}+00:00"
        return f"{text}+00:00"
    return convert


def _second_text(seconds: int, count: int, unit: str) -> str:
    try:
        return (_EPOCH + timedelta(seconds=seconds)).isoformat()[:19]
    except OverflowError:
        raise Unfitting(f"{count} {unit} since 1970 is past the years 1 to 9999") from None


def _day(days: int) -> str:
    try:
        return (_EPOCH_DAY + timedelta(days=days)).isoformat()
    except OverflowError:
        raise Unfitting(f"{days} days since 1970 is past the years 1 to 9999") from None


def _clock(unit: str) -> Convert:
    def convert(count: int) -> str:
        whole = timedelta(**{unit: count})
        if not timedelta(0) <= whole < timedelta(days=1):
            raise Unfitting(f"{count} {unit} is not a time of day")
        return (datetime.min + whole).time().isoformat()
    return convert


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_LOGICAL: dict[tuple[str, str], Convert] = {
    ("long", "timestamp-millis"): _instant("milliseconds"),
    ("long", "timestamp-micros"): _instant("microseconds"),
    ("long", "local-timestamp-millis"): _instant("milliseconds"),
    ("long", "local-timestamp-micros"): _instant("microseconds"),
    ("int", "date"): _day,
    ("int", "time-millis"): _clock("milliseconds"),
    ("long", "time-micros"): _clock("microseconds"),
}


class _Compiler:
    """Converters for the values of one schema; None where fastavro's is already right."""

    def __init__(self, schema: Any) -> None:
        self.named: dict[str, Any] = {}
        self.converters: dict[str, Convert | None] = {}
        self._names(schema, "")

    def _names(self, node: Any, space: str) -> None:
        if isinstance(node, list):
            for branch in node:
                self._names(branch, space)
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = str(node["name"])
            space = str(node.get("namespace", space)) if "." not in name else \
                name.rpartition(".")[0]
            full = name if "." in name else f"{space}.{name}" if space else name
            self.named[full] = self.named[full.rpartition(".")[2]] = node
            for field in node.get("fields", []):
                self._names(field["type"], space)
        elif isinstance(kind, dict | list):
            self._names(kind, space)
        elif kind == "array":
            self._names(node["items"], space)
        elif kind == "map":
            self._names(node["values"], space)

    def convert(self, node: Any, seen: tuple[str, ...] = ()  # noqa: PLR0911 - one per kind
                ) -> Convert | None:
        """The converter of ``node``'s values, or None if none is needed."""
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _base64 if node == "bytes" else None
            return self._named(node, seen)
        if isinstance(node, list):
            return self._union(node, seen)
        kind = node.get("type")
        logical = self._logical(node)
        if logical is not None:
            return logical
        if kind in ("record", "error"):
            return self._record(node, seen)
        if kind in ("array", "map"):
            return self._container(node, seen)
        if kind == "fixed":
            return _base64
        return None if kind == "enum" else self.convert(kind, seen)

    @staticmethod
    def _logical(node: dict[str, Any]) -> Convert | None:
        kind, logical = node.get("type"), node.get("logicalType")
        if logical == "decimal" and kind in ("bytes", "fixed") and "precision" in node:
            return _decimal(int(node["precision"]), int(node.get("scale", 0)))
        return _LOGICAL.get((str(kind), str(logical)))

    def _container(self, node: dict[str, Any], seen: tuple[str, ...]) -> Convert | None:
        if node["type"] == "array":
            items = self.convert(node["items"], seen)
            return None if items is None else (lambda v: [items(x) for x in v])
        values = self.convert(node["values"], seen)
        return None if values is None else (lambda v: {k: values(x) for k, x in v.items()})

    def _named(self, name: str, seen: tuple[str, ...]) -> Convert | None:
        if name in seen:
            # A record inside itself: its converter is the one being made; look it up
            # when a value needs it.
            def later(value: Any) -> Any:
                return (self.converters.get(name) or _same)(value)
            return later
        node = self.named.get(name)
        return None if node is None else self.convert(node, seen)

    def _record(self, node: dict[str, Any], seen: tuple[str, ...]) -> Convert | None:
        name = str(node["name"])
        fields = [(str(f["name"]), self.convert(f["type"], (*seen, name)))
                  for f in node["fields"]]
        needed = tuple((n, c) for n, c in fields if c is not None)
        if not needed:
            self.converters[name] = None
            return None

        def record(value: dict[str, Any]) -> dict[str, Any]:
            for field, conv in needed:
                if field in value:
                    try:
                        value[field] = conv(value[field])
                    except Unfitting as exc:
                        exc.path.insert(0, field)
                        raise
            return value
        self.converters[name] = record
        return record

    def _union(self, branches: list[Any], seen: tuple[str, ...]) -> Convert | None:
        concrete = [b for b in branches if b != "null"]
        converters = [self.convert(b, seen) for b in concrete]
        if all(c is None for c in converters):
            return None
        if len(concrete) == 1:
            only = converters[0]
            assert only is not None
            return lambda v: None if v is None else only(v)
        # Which branch a value came from is not in the value: the union is read with its
        # logical types, by fastavro (see _strip), and its objects made JSON-shaped.
        return _jsonable


def _same(value: Any) -> Any:
    return value


def _jsonable(value: Any) -> Any:
    """A value fastavro converted itself (inside a union of several logical branches)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return _base64(value)
    if value is not None and type(value).__name__ in ("UUID", "time"):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return value


def _strip(node: Any) -> Any:
    """``node`` without its logical types, so fastavro returns the plain values underneath,
    except inside a union of several branches that need converting (see _union)."""
    if isinstance(node, list):
        wanted = [b for b in node if b != "null"]
        if len(wanted) > 1:
            return node
        return [_strip(b) for b in node]
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if k != "logicalType"}
    if "fields" in out:
        out["fields"] = [{**f, "type": _strip(f["type"])} for f in out["fields"]]
    for key in ("items", "values"):
        if key in out:
            out[key] = _strip(out[key])
    if isinstance(out.get("type"), dict | list):
        out["type"] = _strip(out["type"])
    return out


def _document(schema: Any) -> Any:
    return orjson.loads(schema) if isinstance(schema, str) else schema


class AvroReader:
    """Reads the records of one writer schema.

    With a ``reader`` (the contract is a registry subject's Avro schema), each record is
    resolved to it by Avro's rules: a writer whose data the reader cannot read is refused
    once, here, naming each field (:func:`avro_problems`). When resolution is only dropping
    the writer's extra fields and adding the reader's defaults (the usual evolution), the
    record is read with the writer's schema alone, so ``raw`` keeps every field the producer
    wrote; otherwise (a renamed field, an enum's default, string and bytes, a promotion)
    fastavro resolves it.
    """

    def __init__(self, writer: Any, reader: Any = None) -> None:
        writer = _document(writer)
        reader = _document(reader) if reader is not None else None
        if not isinstance(writer, dict) or writer.get("type") not in ("record", "error"):
            raise SchemaMismatch("the writer's schema is not a record")
        self._defaults: dict[str, Any] = {}
        shape = writer
        self._reader: Any = None
        if reader is not None:
            problems = avro_problems(writer, reader)
            if problems:
                raise SchemaMismatch("; ".join(problems))
            self._defaults = reader_defaults(writer, reader)
            if not _extends(writer, reader):
                shape = reader
                self._reader = fastavro.parse_schema(_strip(reader))
        self._writer = fastavro.parse_schema(_strip(writer))
        self._convert = _Compiler(shape).convert(shape) or _same

    def decode(self, payload: memoryview) -> dict[str, Any]:
        """The payload's record as a JSON-shaped event, or raise its dead letter."""
        buffer = io.BytesIO(payload)
        try:
            record: Any = fastavro.schemaless_reader(buffer, self._writer, self._reader)
        except _UNREADABLE as exc:
            raise EventRejected("decode_error", "decode",
                                f"not an Avro record of its schema: {type(exc).__name__}: "
                                f"{exc}") from None
        if buffer.tell() != len(payload):
            raise EventRejected("decode_error", "decode",
                                f"{len(payload) - buffer.tell()} bytes follow the Avro record: "
                                "the value is not one record of its schema")
        if not isinstance(record, dict):
            raise EventRejected("not_an_object", "decode", "the Avro value is not a record")
        try:
            record = self._convert(record)
        except Unfitting as exc:
            raise EventRejected("conversion_error", "decode",
                                f"field {'.'.join(exc.path)!r}: {exc.message}") from None
        # The reader's defaults for what the writer lacks, JSON-shaped (fastavro would fill
        # them as Avro's JSON spells them).
        record.update(self._defaults)
        event: dict[str, Any] = record
        return event


def _extends(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    """Is reading ``writer`` as ``reader`` only dropping fields and adding defaults?"""
    mine = {f["name"]: f["type"] for f in writer["fields"]}
    return all((f["name"] not in mine and not f.get("aliases"))
               or mine.get(f["name"]) == f["type"] for f in reader["fields"])
