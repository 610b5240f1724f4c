"""Avro: one record's payload, read with the schema it was written with, as a JSON-shaped event.

The record is read with the writer's schema (the one its id names), so every field the
producer wrote is in the event, and in ``raw``; the contract then picks its columns as for
JSON. The values are those a JSON producer would have sent (see ``docs/formats.md``): times
as ISO 8601 strings, a uuid as its text, bytes as base64, a decimal as an exact number
(:mod:`.avro_values`).

Two readers do it. The usual one is generated once per writer schema
(:mod:`.avro_compiled`): five times cheaper than fastavro's, whose file-object reads cost a
method call per value. fastavro reads what the generated code does not cover (a recursive
type) and what must be resolved to the contract's schema (a renamed field, a promotion):
asked for the plain values underneath the logical types (its schema has the
``logicalType`` annotations taken out), each logical value converted here by a converter
compiled once per schema. Either way, what fastavro lets through and a sink must not is
refused: a decimal with more digits than its precision (fastavro's own reader rounds it,
silently: 123456789012345.67 in a decimal(12, 2) reads as 1.23456789012E+14), a time past
the year 9999, and trailing bytes after the record (the value is not one record).
"""

from __future__ import annotations

import io
import struct
from datetime import date, datetime
from typing import Any

import fastavro
import orjson

from processor.core.errors import EventRejected
from processor.decode.formats import SchemaMismatch
from processor.decode.formats.avro_compiled import Trailing, compile_reader
from processor.decode.formats.avro_values import (
    Convert,
    Unfitting,
    base64_text,
    logical_converter,
    named_types,
)
from processor.registry.avro_contract import avro_problems, reader_defaults

# What fastavro raises on bytes that do not match the schema: a short read, a bad varint or
# union/enum index, text that is not UTF-8, a length past the end.
_UNREADABLE = (EOFError, ValueError, IndexError, KeyError, OverflowError, StopIteration,
               TypeError, UnicodeDecodeError, MemoryError, struct.error)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string",
                         "bytes"})


class _Compiler:
    """Converters for the values of one schema; None where fastavro's is already right."""

    def __init__(self, schema: Any) -> None:
        self.named, _ = named_types(schema)
        self.converters: dict[str, Convert | None] = {}

    def convert(self, node: Any, seen: tuple[str, ...] = ()  # noqa: PLR0911 - one per kind
                ) -> Convert | None:
        """The converter of ``node``'s values, or None if none is needed."""
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return base64_text if node == "bytes" else None
            return self._named(node, seen)
        if isinstance(node, list):
            return self._union(node, seen)
        kind = node.get("type")
        logical = logical_converter(node)
        if logical is not None:
            return logical
        if kind in ("record", "error"):
            return self._record(node, seen)
        if kind in ("array", "map"):
            return self._container(node, seen)
        if kind == "fixed":
            return base64_text
        return None if kind == "enum" else self.convert(kind, seen)

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
        return base64_text(value)
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


def schema_document(schema: Any) -> Any:
    """A schema as its JSON document (the registry's parse may be its text)."""
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
        writer = schema_document(writer)
        reader = schema_document(reader) if reader is not None else None
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
        # The generated reader, when the writer's schema alone reads the record.
        self._compiled = compile_reader(writer) if self._reader is None else None
        if self._compiled is None:
            self.decode = self._by_fastavro  # type: ignore[method-assign]
        elif not self._defaults:
            self.decode = self._generated  # type: ignore[method-assign]

    def decode(self, value: bytes, start: int) -> dict[str, Any]:
        """The record in ``value`` from ``start`` as a JSON-shaped event, or raise its dead
        letter."""
        record = self._generated(value, start)
        record.update(self._defaults)
        return record

    def _generated(self, value: bytes, start: int) -> dict[str, Any]:
        """:meth:`decode` by the generated reader, without the reader's defaults."""
        assert self._compiled is not None
        try:
            return self._compiled(value, start)
        except Trailing as exc:
            raise EventRejected("decode_error", "decode",
                                f"{exc.extra} bytes follow the Avro record: the value is not "
                                "one record of its schema") from None
        except Unfitting as exc:
            raise _unfit(exc) from None
        except _UNREADABLE as exc:
            raise _unreadable(exc) from None

    def _by_fastavro(self, value: bytes, start: int) -> dict[str, Any]:
        """:meth:`decode` by fastavro."""
        payload = memoryview(value)[start:]
        buffer = io.BytesIO(payload)
        try:
            record: Any = fastavro.schemaless_reader(buffer, self._writer, self._reader)
        except _UNREADABLE as exc:
            raise _unreadable(exc) from None
        if buffer.tell() != len(payload):
            raise EventRejected("decode_error", "decode",
                                f"{len(payload) - buffer.tell()} bytes follow the Avro record: "
                                "the value is not one record of its schema")
        if not isinstance(record, dict):
            raise EventRejected("not_an_object", "decode", "the Avro value is not a record")
        try:
            record = self._convert(record)
        except Unfitting as exc:
            raise _unfit(exc) from None
        # The reader's defaults for what the writer lacks, JSON-shaped (fastavro would fill
        # them as Avro's JSON spells them).
        record.update(self._defaults)
        event: dict[str, Any] = record
        return event


def _unreadable(exc: Exception) -> EventRejected:
    return EventRejected("decode_error", "decode",
                         f"not an Avro record of its schema: {type(exc).__name__}: {exc}")


def _unfit(exc: Unfitting) -> EventRejected:
    return EventRejected("conversion_error", "decode",
                         f"field {'.'.join(exc.path)!r}: {exc.message}")


def _extends(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    """Is reading ``writer`` as ``reader`` only dropping fields and adding defaults?"""
    mine = {f["name"]: f["type"] for f in writer["fields"]}
    return all((f["name"] not in mine and not f.get("aliases"))
               or mine.get(f["name"]) == f["type"] for f in reader["fields"])
