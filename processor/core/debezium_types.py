"""Debezium's column types: a change event's embedded schema as a mirror's contract, and its
logical-typed values as the JSON values that contract reads.

Kafka Connect's JSON converter (with ``schemas.enable=true``, its default) sends every
change event with the Connect schema of ``before`` and ``after``: per field its Connect type
(``int32``, ``int64``, ``string``, ``bytes``, ``struct`` …), whether it is optional, and for
a logical type its *name* (``io.debezium.time.MicroTimestamp``) and parameters (a decimal's
``scale``). Two jobs follow from it, both here so that they agree by construction:

- :func:`contract_of` derives the mirror's JSON Schema contract from the ``after`` struct,
  with the column types of :data:`TYPE_MAPPING` (``weir cdc-contract`` writes it; docs/cdc.md
  shows the table);
- :func:`normalize` rewrites the logical-typed values of one record in place, from
  Debezium's wire form (days, microseconds, base64 bytes with a scale) to the JSON form that
  contract takes (an ISO date, an RFC 3339 time, a decimal string), before the record is
  checked. Only with the embedded schema: without it a value is not told apart from a
  plain number, and the contract and mapped columns read it as the wire form.

Change events in Avro (a Kafka Connect Avro converter, through the schema registry) carry
the same Connect schema inside their Avro schema (``connect.name``, ``connect.parameters``
on each field): :func:`connect_schema_of_avro` reads it back into the JSON converter's form,
so both jobs serve them unchanged.

A value a column cannot hold (a time past the year 9999, a decimal that is not one) is a
``conversion_error`` dead letter naming the field.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from processor.core.errors import EventRejected

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DAY = date(1970, 1, 1)

# Connect type (or logical name) -> (JSON Schema of the value, PostgreSQL column type), for
# the value as normalize() leaves it. A logical name wins over its Connect type.
STRING = {"type": "string"}
NUMBER_TEXT = {"type": "string"}  # a decimal as its exact text
TYPE_MAPPING: dict[str, tuple[dict[str, Any], str]] = {
    "int8": ({"type": "integer"}, "integer"),
    "int16": ({"type": "integer"}, "integer"),
    "int32": ({"type": "integer"}, "integer"),
    "int64": ({"type": "integer"}, "bigint"),
    # The JSON converter's names for Connect's FLOAT32 and FLOAT64.
    "float": ({"type": "number"}, "double precision"),
    "double": ({"type": "number"}, "double precision"),
    "boolean": ({"type": "boolean"}, "boolean"),
    "string": (STRING, "text"),
    "bytes": (STRING, "text"),  # base64, as the JSON converter sends it
    "array": ({}, "jsonb"),
    "map": ({}, "jsonb"),
    "struct": ({}, "jsonb"),
    "io.debezium.time.Date": ({"type": "string", "format": "date"}, "date"),
    "org.apache.kafka.connect.data.Date": ({"type": "string", "format": "date"}, "date"),
    "io.debezium.time.Timestamp": ({"type": "string", "format": "date-time"}, "timestamptz"),
    "io.debezium.time.MicroTimestamp": (
        {"type": "string", "format": "date-time"}, "timestamptz"),
    "io.debezium.time.NanoTimestamp": (
        {"type": "string", "format": "date-time"}, "timestamptz"),
    "org.apache.kafka.connect.data.Timestamp": (
        {"type": "string", "format": "date-time"}, "timestamptz"),
    "io.debezium.time.ZonedTimestamp": (
        {"type": "string", "format": "date-time"}, "timestamptz"),
    "io.debezium.time.Time": (STRING, "text"),
    "io.debezium.time.MicroTime": (STRING, "text"),
    "io.debezium.time.NanoTime": (STRING, "text"),
    "org.apache.kafka.connect.data.Time": (STRING, "text"),
    "io.debezium.time.ZonedTime": (STRING, "text"),
    "org.apache.kafka.connect.data.Decimal": (NUMBER_TEXT, "numeric"),
    "io.debezium.data.VariableScaleDecimal": (NUMBER_TEXT, "numeric"),
    "io.debezium.data.Uuid": ({"type": "string", "format": "uuid"}, "uuid"),
    "io.debezium.data.Json": ({}, "jsonb"),
    "io.debezium.data.Xml": (STRING, "text"),
    "io.debezium.data.Enum": (STRING, "text"),
    "io.debezium.data.EnumSet": (STRING, "text"),
    "io.debezium.data.Bits": (STRING, "text"),
}


def contract_of(after: Mapping[str, Any], title: str = "",
                keys: Collection[str] | None = None) -> dict[str, Any]:
    """The JSON Schema contract of a mirror whose rows are ``after`` (a Connect struct
    schema): one property per field, typed by :data:`TYPE_MAPPING`, required unless the
    field is optional; with ``keys``, only those fields are required (a mirror that evolves
    by itself takes every other column as nullable, so that rows from before a column was
    added, or after one was dropped, still fit)."""
    properties: dict[str, Any] = {}
    required = []
    for field in _fields(after):
        value_schema, pg_type = mapping_of(field)
        prop = dict(value_schema)
        if pg_type != "text":
            prop["x-weir-column-type"] = pg_type  # what the JSON type alone does not say
        needed = (field["field"] in keys) if keys is not None else \
            not field.get("optional", False)
        if needed:
            required.append(field["field"])
        elif "type" in prop:
            prop["type"] = [prop["type"], "null"]
        properties[field["field"]] = prop
    contract: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                "type": "object", "properties": properties,
                                "required": required}
    if title:
        contract["title"] = title
    return contract


def mapping_of(field: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """One Connect field's (value's JSON Schema, column type); text for a type Weir does not
    know (its value lands as Debezium sends it)."""
    name, kind = field.get("name"), field.get("type")
    found = TYPE_MAPPING.get(name) if isinstance(name, str) else None
    if found is None and isinstance(name, str) and name.startswith("io.debezium.data.geometry"):
        found = ({}, "jsonb")
    if found is None:
        found = TYPE_MAPPING.get(kind) if isinstance(kind, str) else None
    return found or ({}, "jsonb")


def record_struct(schema: Any, which: str) -> Mapping[str, Any] | None:
    """The struct schema of ``before`` or ``after`` in a change event's envelope schema."""
    if not isinstance(schema, dict):
        return None
    for field in _fields(schema):
        if field.get("field") == which and field.get("type") == "struct":
            return field
    return None


def normalize(record: dict[str, Any], struct: Mapping[str, Any]) -> None:
    """Rewrite ``record``'s logical-typed values (per its struct schema) as the contract of
    :func:`contract_of` reads them; raises a dead letter for one a column cannot hold."""
    for field in _fields(struct):
        name = field.get("name")
        convert = _NORMALIZERS.get(name) if isinstance(name, str) else None
        if convert is None or field.get("converted"):
            continue
        key = field["field"]
        value = record.get(key)
        if value is None:
            continue
        try:
            record[key] = convert(value, field.get("parameters") or {})
        except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
            raise EventRejected(
                "conversion_error", "decode",
                f"field {key!r} ({name}): {value!r:.80} cannot be read as one: {exc}") from None


def _fields(struct: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    fields = struct.get("fields")
    return [f for f in fields if isinstance(f, dict) and isinstance(f.get("field"), str)] \
        if isinstance(fields, list) else []


def _since_epoch(per_second: int) -> Callable[[Any, Mapping[str, Any]], str]:
    def convert(value: Any, _: Mapping[str, Any]) -> str:
        if type(value) is not int:
            raise TypeError(f"not an integer count of 1/{per_second} s")
        seconds, rest = divmod(value, per_second)
        moment = EPOCH + timedelta(seconds=seconds, microseconds=rest * 1_000_000 // per_second)
        return moment.isoformat().replace("+00:00", "Z")
    return convert


def _time_of_day(per_second: int) -> Callable[[Any, Mapping[str, Any]], str]:
    def convert(value: Any, _: Mapping[str, Any]) -> str:
        if type(value) is not int or not 0 <= value <= 86_400 * per_second:
            raise ValueError("not a time of day")
        seconds, rest = divmod(value, per_second)
        hours, seconds = divmod(seconds, 3600)
        return f"{hours:02d}:{seconds // 60:02d}:{seconds % 60:02d}." \
               f"{rest * 1_000_000 // per_second:06d}"
    return convert


def _days(value: Any, _: Mapping[str, Any]) -> str:
    if type(value) is not int:
        raise TypeError("not an integer count of days")
    return (EPOCH_DAY + timedelta(days=value)).isoformat()


def _decimal(value: Any, parameters: Mapping[str, Any]) -> str:
    """Connect's Decimal: the unscaled value as big-endian two's complement bytes (base64 in
    JSON), and its scale as a parameter; in Avro, the number the Avro reader made of them
    (a float when exactly one, up to 15 digits: its repr is the decimal)."""
    if isinstance(value, Decimal) or type(value) is float:
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return str(value) if isinstance(value, Decimal) else repr(value)
    if type(value) is not str:
        raise TypeError("not base64 text")
    scale = int(parameters.get("scale", 0))
    unscaled = int.from_bytes(base64.b64decode(value, validate=True), "big", signed=True)
    return str(Decimal(unscaled).scaleb(-scale))


def _variable_decimal(value: Any, _: Mapping[str, Any]) -> str:
    if not isinstance(value, dict) or type(value.get("scale")) is not int:
        raise TypeError("not a {scale, value} struct")
    return _decimal(value.get("value"), {"scale": value["scale"]})


def _json(value: Any, _: Mapping[str, Any]) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


_NORMALIZERS: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "io.debezium.time.Date": _days,
    "org.apache.kafka.connect.data.Date": _days,
    "io.debezium.time.Timestamp": _since_epoch(1_000),
    "org.apache.kafka.connect.data.Timestamp": _since_epoch(1_000),
    "io.debezium.time.MicroTimestamp": _since_epoch(1_000_000),
    "io.debezium.time.NanoTimestamp": _since_epoch(1_000_000_000),
    "io.debezium.time.Time": _time_of_day(1_000),
    "org.apache.kafka.connect.data.Time": _time_of_day(1_000),
    "io.debezium.time.MicroTime": _time_of_day(1_000_000),
    "io.debezium.time.NanoTime": _time_of_day(1_000_000_000),
    "org.apache.kafka.connect.data.Decimal": _decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_decimal,
    "io.debezium.data.Json": _json,
}


# Avro's logical types whose values the Avro reader already gives as their JSON text (a
# date, a time): normalize() leaves them (processor.decode.formats.avro_values).
_READ_AS_TEXT = frozenset({"date", "time-millis", "time-micros", "timestamp-millis",
                           "timestamp-micros", "local-timestamp-millis",
                           "local-timestamp-micros"})
# Avro's types as Kafka Connect's Avro converters write a Connect schema, back to Connect's
# type names (the JSON converter's), so that one table types both.
_AVRO_CONNECT = {"int": "int32", "long": "int64", "float": "float", "double": "double",
                 "boolean": "boolean", "string": "string", "bytes": "bytes", "fixed": "bytes",
                 "enum": "string", "record": "struct", "array": "array", "map": "map"}


def connect_schema_of_avro(schema: Any) -> dict[str, Any]:
    """The Connect schema, as the JSON converter embeds it, of an Avro schema that a Kafka
    Connect Avro converter (Confluent's, Apicurio's) wrote: each Avro type as its Connect
    type, ``connect.name`` as the logical name, ``connect.parameters`` as the parameters, a
    union with null as optional, named types resolved. A Debezium envelope's then reads as
    the JSON converter's does (:func:`record_struct`, :func:`contract_of`,
    :func:`normalize`)."""
    named: dict[str, Any] = {}

    def collect(node: Any, space: str) -> None:
        if isinstance(node, list):
            for branch in node:
                collect(branch, space)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in ("record", "enum", "fixed") and isinstance(node.get("name"), str):
                name = node["name"]
                if "." in name:
                    space = name.rpartition(".")[0]
                elif isinstance(node.get("namespace"), str):
                    space = node["namespace"]
                named[name if "." in name else f"{space}.{name}" if space else name] = node
                named.setdefault(name.rpartition(".")[2], node)
            collect(kind, space)
            for field in node.get("fields", ()) if kind == "record" else ():
                if isinstance(field, dict):
                    collect(field.get("type"), space)
            collect(node.get("items"), space)
            collect(node.get("values"), space)

    def convert(node: Any, optional: bool, seen: frozenset[str]) -> dict[str, Any]:
        if isinstance(node, str) and node in named and node not in seen:
            return convert(named[node], optional, seen | {node})
        if isinstance(node, str):
            return {"type": _AVRO_CONNECT.get(node, node), "optional": optional}
        if isinstance(node, list):
            branches = [b for b in node if b != "null"]
            if len(branches) == 1:
                return convert(branches[0], optional or len(branches) < len(node), seen)
            return {"type": "union", "optional": optional or len(branches) < len(node)}
        if not isinstance(node, dict):
            return {"type": "unknown", "optional": optional}
        kind = node.get("type")
        if not isinstance(kind, str) or (kind in named and kind not in _AVRO_CONNECT):
            out = convert(kind, optional, seen)
        else:
            out = {"type": _AVRO_CONNECT.get(kind, kind), "optional": optional}
            if kind == "record":
                out["fields"] = [{**convert(f.get("type"), False, seen), "field": f["name"]}
                                 for f in node.get("fields", ())
                                 if isinstance(f, dict) and isinstance(f.get("name"), str)]
        if isinstance(node.get("connect.name"), str):
            out["name"] = node["connect.name"]
        if node.get("logicalType") in _READ_AS_TEXT:
            out["converted"] = True  # the Avro reader made it text already
        if isinstance(node.get("connect.parameters"), dict):
            out["parameters"] = node["connect.parameters"]
        return out

    collect(schema, "")
    return convert(schema, False, frozenset())
