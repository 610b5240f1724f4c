"""Avro: one record's payload, read with the schema it was written with, as a JSON-shaped event.

fastavro reads the binary record with the writer's schema (the one its id names), so every
field the producer wrote is in the event, and in ``raw``; the contract then picks its
columns as for JSON. Logical types come out of fastavro as Python objects and are turned
into the values a JSON producer would have sent (see ``docs/formats.md``): times as ISO 8601
strings, a uuid as its text, bytes as base64, a decimal as an exact ``Decimal``.

What fastavro lets through and a sink must not: trailing bytes after the record (the value
is not one record), and a decimal with more digits than its schema's precision (fastavro
rounds it to the precision, silently: 123456789012345.67 in a decimal(12, 2) reads as
1.23456789012E+14). Both are refused here; decimals are read exactly, at any depth,
through fastavro's documented extension point for logical types (``LOGICAL_READERS``).
"""

from __future__ import annotations

import base64
import io
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import fastavro
import fastavro.read

from processor.decode.converters import show
from processor.decode.formats import SchemaMismatch
from processor.errors import EventRejected
from processor.registry.avro_contract import avro_problems, reader_defaults

# What fastavro raises on bytes that do not match the schema: a short read, a bad varint or
# union/enum index, text that is not UTF-8, a length past the end.
_UNREADABLE = (EOFError, ValueError, IndexError, KeyError, OverflowError, StopIteration,
               TypeError, UnicodeDecodeError, MemoryError)


class DecimalPastPrecision(ValueError):
    """A decimal with more digits than its schema's precision."""


def _exact_decimal(data: bytes, writer_schema: Any = None, reader_schema: Any = None
                   ) -> Decimal:
    """An Avro decimal's value, exact; raise if it has more digits than its precision."""
    schema = writer_schema or {}
    number = Decimal(int.from_bytes(data, "big", signed=True)).scaleb(-int(schema.get("scale",
                                                                                     0)))
    precision = schema.get("precision")
    if precision is not None and len(number.as_tuple().digits) > int(precision):
        raise DecimalPastPrecision(
            f"{show(number)} has {len(number.as_tuple().digits)} digits, more than its "
            f"schema's decimal precision ({precision})")
    return number


# For every reader in the process: fastavro's own decimal reader rounds past the precision.
fastavro.read.LOGICAL_READERS["bytes-decimal"] = _exact_decimal
fastavro.read.LOGICAL_READERS["fixed-decimal"] = _exact_decimal

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string"})


def _plain(schema: Any) -> bool:
    """Does every value of ``schema`` come out of fastavro already JSON-shaped?"""
    if isinstance(schema, str):
        return schema in _PRIMITIVES  # a named type's name may be a fixed: walk it
    if isinstance(schema, list):
        return all(_plain(branch) for branch in schema)
    if not isinstance(schema, dict) or "logicalType" in schema:
        return False
    kind = schema.get("type")
    inner = {"enum": [], "array": [schema.get("items")], "map": [schema.get("values")],
             "record": [f["type"] for f in schema.get("fields", [])]}.get(str(kind), [kind])
    return all(_plain(t) for t in inner)


def jsonable(value: Any) -> Any:
    """A fastavro value as the JSON-shaped value a JSON producer would have sent."""
    kind = type(value)
    if kind is dict:
        return {k: jsonable(v) for k, v in value.items()}
    if kind is list:
        return [jsonable(v) for v in value]
    if kind is datetime or kind is date or kind is time:
        return value.isoformat()
    if kind is UUID:
        return str(value)
    if kind is bytes:
        return base64.b64encode(value).decode("ascii")
    return value


class AvroReader:
    """Reads the records of one writer schema (parsed once by fastavro).

    With a ``reader`` (the contract is a registry subject's Avro schema), each record is
    resolved to it by Avro's rules: a writer whose data the reader cannot read is refused
    once, here, naming each field (:func:`avro_problems`). When resolution is only dropping
    the writer's extra fields and adding the reader's defaults (the usual evolution), the
    record is read with the writer's schema alone, so ``raw`` keeps every field the producer
    wrote; otherwise (a renamed field, an enum's default, string and bytes) fastavro
    resolves it.
    """

    def __init__(self, writer: Any, reader: Any = None) -> None:
        if not isinstance(writer, dict) or writer.get("type") != "record":
            raise SchemaMismatch("the writer's schema is not a record")
        self._writer = writer
        self._reader: Any = None
        self._defaults: dict[str, Any] = {}
        shape = writer
        if reader is not None:
            problems = avro_problems(writer, reader)
            if problems:
                raise SchemaMismatch("; ".join(problems))
            self._defaults = reader_defaults(writer, reader)
            if not _extends(writer, reader):
                self._reader, shape = reader, reader
        fields = shape.get("fields", [])
        # Only the fields that can hold a non-JSON value are walked per event.
        self._convert = tuple(f["name"] for f in fields if not _plain(f["type"]))

    def decode(self, payload: memoryview) -> dict[str, Any]:
        """The payload's record as a JSON-shaped event, or raise its dead letter."""
        buffer = io.BytesIO(payload)
        try:
            record = fastavro.schemaless_reader(buffer, self._writer, self._reader)
        except DecimalPastPrecision as exc:
            raise EventRejected("conversion_error", "decode", str(exc)) from None
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
        for name in self._convert:
            if name in record:
                record[name] = jsonable(record[name])
        # fastavro fills a missing field with the default as Avro's JSON spells it; the
        # reader's defaults, JSON-shaped, replace that.
        record.update(self._defaults)
        return record


def _extends(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    """Is reading ``writer`` as ``reader`` only dropping fields and adding defaults?"""
    mine = {f["name"]: f["type"] for f in writer["fields"]}
    return all((f["name"] not in mine and not f.get("aliases")) or mine.get(f["name"]) == f["type"]
               for f in reader["fields"])
