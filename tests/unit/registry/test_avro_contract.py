"""Avro schemas as contracts: the JSON Schema mapping, schema resolution, reader defaults."""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import fastavro
import fastjsonschema
import pytest
from fastavro.read import SchemaResolutionError

from processor.contracts import Column, ContractError, derive_columns
from processor.registry.avro_contract import (
    AvroSchemaError,
    avro_problems,
    json_schema_from_avro,
    reader_defaults,
)

ITEM = {
    "type": "record", "name": "Item",
    "fields": [
        {"name": "sku", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": "double"},
    ],
}
ORDER: dict[str, Any] = {
    "type": "record", "name": "order", "namespace": "weir.events",
    "doc": "A customer's order changed state.",
    "fields": [
        {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"},
         "doc": "Unique per event."},
        {"name": "customer_id", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "order_id", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["created", "paid", "shipped", "cancelled"]}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 12, "scale": 2}},
        {"name": "currency", "type": "string"},
        {"name": "items", "type": {"type": "array", "items": ITEM}},
        {"name": "channel", "type": ["null", "string"], "default": None},
    ],
}


def record(*fields: dict[str, Any], name: str = "R", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def field(name: str, avro_type: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": avro_type, **extra}


def prop_of(avro_type: Any) -> dict[str, Any]:
    """The JSON Schema property one field of this type becomes."""
    return dict(json_schema_from_avro(record(field("f", avro_type)), version=1)
                ["properties"]["f"])


def json_event() -> dict[str, Any]:
    """An order as the decoder hands it on: the JSON-shaped conventions."""
    return {
        "event_id": "0b5c6f1e-4d1a-4c55-9a43-3a1e0f0c9b11", "customer_id": "c-000001",
        "seq": 7, "occurred_at": "2026-11-25T10:00:00+00:00", "order_id": "o-1",
        "status": "paid", "amount": Decimal("19.99"), "currency": "EUR",
        "items": [{"sku": "a", "qty": 1, "price": 19.99}], "channel": None,
    }


# --- the example order ---------------------------------------------------------------------


def test_order_record_becomes_the_columns_of_the_json_contract() -> None:
    schema = json_schema_from_avro(ORDER, version=4)
    assert derive_columns(schema) == (
        Column("event_id", "uuid", False),
        Column("customer_id", "text", False),
        Column("seq", "bigint", False),
        Column("occurred_at", "timestamptz", False),
        Column("order_id", "text", False),
        Column("status", "text", False),
        Column("amount", "numeric", False),
        Column("currency", "text", False),
        Column("items", "jsonb", False),
        Column("channel", "text", True),
    )
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["title"] == "weir.events.order"
    assert schema["description"] == "A customer's order changed state."
    assert schema["version"] == 4
    assert schema["type"] == "object"
    assert schema["required"] == ["event_id", "customer_id", "seq", "occurred_at", "order_id",
                                  "status", "amount", "currency", "items"]
    assert schema["properties"]["event_id"]["description"] == "Unique per event."
    assert schema["properties"]["channel"]["x-weir-avro-default"] is None
    assert "x-weir-avro-default" not in schema["properties"]["seq"]


def test_order_json_schema_validates_the_decoded_event() -> None:
    validate = fastjsonschema.compile(json_schema_from_avro(ORDER, version=1))
    event = json_event()
    assert validate(event) == event
    assert validate({**event, "channel": "web"})["channel"] == "web"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"amount": "19.99"}, "amount must be number"),
        ({"status": "refunded"}, "status must be one of"),
        ({"event_id": 5}, "event_id must be string"),
        ({"occurred_at": "yesterday"}, "occurred_at must be date-time"),
        ({"occurred_at": 1_764_064_800_000_000}, "occurred_at must be string"),
        ({"items": [{"sku": "a", "qty": 2**31, "price": 1.0}]}, "qty must be smaller"),
        ({"items": [{"sku": "a", "qty": 1}]}, "must contain ['price']"),
        ({"channel": 3}, "channel must be string or null"),
        ({"seq": 2**63}, "seq must be smaller"),
    ],
)
def test_order_json_schema_rejects_a_wrong_event(change: dict[str, Any], fragment: str) -> None:
    validate = fastjsonschema.compile(json_schema_from_avro(ORDER, version=1))
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
        validate({**json_event(), **change})
    assert fragment in str(caught.value)


def test_missing_required_field_is_rejected() -> None:
    validate = fastjsonschema.compile(json_schema_from_avro(ORDER, version=1))
    event = json_event()
    del event["seq"]
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="seq"):
        validate(event)
    del event["channel"]  # optional: a null union
    event["seq"] = 1
    assert validate(event) == event


def test_schema_given_as_json_text_is_the_same() -> None:
    assert json_schema_from_avro(json.dumps(ORDER), version=2) == json_schema_from_avro(
        ORDER, version=2)


# --- every mapping row ---------------------------------------------------------------------

INT = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1,
       "x-weir-column-type": "integer"}
LONG = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
DOUBLE = {"type": "number", "x-weir-column-type": "double precision"}
BASE64 = {"type": "string", "contentEncoding": "base64", "x-weir-column-type": "text"}
FIXED = {"type": "fixed", "name": "Sixteen", "size": 16}


@pytest.mark.parametrize(
    ("avro_type", "expected", "column"),
    [
        ("null", {"type": "null"}, "jsonb"),
        ("boolean", {"type": "boolean"}, "boolean"),
        ("int", INT, "integer"),
        ("long", LONG, "bigint"),
        ("float", DOUBLE, "double precision"),
        ("double", DOUBLE, "double precision"),
        ("string", {"type": "string"}, "text"),
        ({"type": "string"}, {"type": "string"}, "text"),
        ("bytes", BASE64, "text"),
        (FIXED, BASE64, "text"),
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]},
         {"type": "string", "enum": ["A", "B"]}, "text"),
        ({"type": "long", "logicalType": "timestamp-millis"},
         {"type": "string", "format": "date-time"}, "timestamptz"),
        ({"type": "long", "logicalType": "timestamp-micros"},
         {"type": "string", "format": "date-time"}, "timestamptz"),
        ({"type": "long", "logicalType": "local-timestamp-millis"},
         {"type": "string", "format": "date-time"}, "timestamptz"),
        ({"type": "long", "logicalType": "local-timestamp-micros"},
         {"type": "string", "format": "date-time"}, "timestamptz"),
        ({"type": "int", "logicalType": "date"}, {"type": "string", "format": "date"}, "date"),
        ({"type": "int", "logicalType": "time-millis"},
         {"type": "string", "x-weir-column-type": "text"}, "text"),
        ({"type": "long", "logicalType": "time-micros"},
         {"type": "string", "x-weir-column-type": "text"}, "text"),
        ({"type": "string", "logicalType": "uuid"},
         {"type": "string", "format": "uuid"}, "uuid"),
        ({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
         {"type": "number", "x-weir-column-type": "numeric", "x-weir-precision": 12,
          "x-weir-scale": 2}, "numeric"),
        ({"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal",
          "precision": 18},
         {"type": "number", "x-weir-column-type": "numeric", "x-weir-precision": 18,
          "x-weir-scale": 0}, "numeric"),
        (record(field("a", "string"), field("b", ["null", "long"]), name="Inner"),
         {"type": "object", "properties": {"a": {"type": "string"},
                                           "b": {**LONG, "type": ["integer", "null"]}},
          "required": ["a"]}, "jsonb"),
        ({"type": "array", "items": "string"},
         {"type": "array", "items": {"type": "string"}}, "jsonb"),
        ({"type": "map", "values": "int"},
         {"type": "object", "additionalProperties": INT}, "jsonb"),
        (["int", "string"], {"x-weir-column-type": "jsonb"}, "jsonb"),
        (["null", "int", "string"], {"x-weir-column-type": "jsonb"}, "jsonb"),
        (["null"], {"type": "null"}, "jsonb"),
    ],
)
def test_mapping_row(avro_type: Any, expected: dict[str, Any], column: str) -> None:
    prop = prop_of(avro_type)
    assert prop == expected
    assert derive_columns({"properties": {"f": prop}})[0].pg_type == column


@pytest.mark.parametrize(
    ("avro_type", "expected"),
    [
        (["null", "string"], {"type": ["string", "null"]}),
        (["string", "null"], {"type": ["string", "null"]}),
        (["null", "int"], {**INT, "type": ["integer", "null"]}),
        (["null", {"type": "long", "logicalType": "timestamp-micros"}],
         {"type": ["string", "null"], "format": "date-time"}),
        (["null", {"type": "enum", "name": "E", "symbols": ["A"]}],
         {"type": ["string", "null"], "enum": ["A", None]}),
        (["null", {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 1}],
         {"type": ["number", "null"], "x-weir-column-type": "numeric", "x-weir-precision": 4,
          "x-weir-scale": 1}),
        (["null", {"type": "array", "items": "long"}], {"type": ["array", "null"],
                                                        "items": LONG}),
    ],
)
def test_null_union_adds_null_in_either_order(avro_type: Any, expected: dict[str, Any]) -> None:
    prop = prop_of(avro_type)
    assert prop == expected
    schema = json_schema_from_avro(record(field("f", avro_type)), version=1)
    assert schema["required"] == []
    assert derive_columns(schema)[0].nullable


def test_nullable_values_validate() -> None:
    schema = json_schema_from_avro(record(
        field("e", ["null", {"type": "enum", "name": "E", "symbols": ["A"]}]),
        field("t", [{"type": "long", "logicalType": "timestamp-millis"}, "null"]),
        field("d", ["null", {"type": "bytes", "logicalType": "decimal", "precision": 4,
                             "scale": 1}]),
    ), version=1)
    validate = fastjsonschema.compile(schema)
    assert validate({"e": None, "t": None, "d": None})
    assert validate({"e": "A", "t": "2026-11-25T10:00:00.123000+00:00", "d": Decimal("1.5")})
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate({"e": "B", "t": None, "d": None})


def test_values_of_each_row_validate_as_the_decoder_shapes_them() -> None:
    types = {
        "b": "boolean", "i": "int", "l": "long", "f": "float", "d": "double", "s": "string",
        "by": "bytes", "fx": FIXED, "en": {"type": "enum", "name": "E", "symbols": ["X"]},
        "ts": {"type": "long", "logicalType": "timestamp-millis"},
        "dt": {"type": "int", "logicalType": "date"},
        "tm": {"type": "int", "logicalType": "time-millis"},
        "u": {"type": "string", "logicalType": "uuid"},
        "dec": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
        "arr": {"type": "array", "items": "int"}, "m": {"type": "map", "values": "string"},
        "un": ["int", "string"],
    }
    schema = json_schema_from_avro(record(*(field(k, v) for k, v in types.items())), version=1)
    validate = fastjsonschema.compile(schema)
    event = {
        "b": True, "i": -(2**31), "l": 2**63 - 1, "f": 1.5, "d": 2.0, "s": "x",
        "by": base64.b64encode(b"\x00\xff").decode(), "fx": base64.b64encode(b"0" * 16).decode(),
        "en": "X", "ts": "2026-11-25T10:00:00+00:00", "dt": "2026-11-25", "tm": "10:00:00.5",
        "u": str(uuid.uuid4()), "dec": Decimal("-1.25"), "arr": [1, 2], "m": {"k": "v"},
        "un": "either",
    }
    assert validate(event) == event
    assert validate({**event, "un": 3})["un"] == 3
    for key, wrong in {"b": 1, "i": 2**31, "l": "1", "s": 1, "by": b"x", "en": "Y",
                       "dt": "25/11/2026", "arr": ["a"], "m": {"k": 1}}.items():
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            validate({**event, key: wrong})


def test_doc_becomes_description_and_default_is_kept_informationally() -> None:
    prop = json_schema_from_avro(record(
        field("n", "int", doc="How many.", default=3)), version=1)["properties"]["n"]
    assert prop["description"] == "How many."
    assert prop["x-weir-avro-default"] == 3
    # Not JSON Schema's "default", which fastjsonschema would fill in.
    assert "default" not in prop
    assert fastjsonschema.compile(json_schema_from_avro(record(
        field("n", ["null", "int"], default=None)), version=1))({}) == {}


@pytest.mark.parametrize(
    "avro_type",
    [
        {"type": "long", "logicalType": "timestamp-nanos"},  # fastavro does not convert it
        {"type": "string", "logicalType": "no-such-type"},
        {"type": "long", "logicalType": "date"},  # date is only defined on int
        {"type": "string", "logicalType": "timestamp-millis"},
        {"type": "bytes", "logicalType": "decimal"},  # no precision: not a decimal
        {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"},
    ],
)
def test_unknown_or_misplaced_logical_type_falls_back_to_the_underlying_type(
        avro_type: dict[str, Any]) -> None:
    underlying = dict(avro_type)
    del underlying["logicalType"]
    assert prop_of(avro_type) == prop_of(underlying)


def test_named_type_used_twice_is_expanded_both_times() -> None:
    schema = json_schema_from_avro(record(
        field("home", {"type": "record", "name": "Address", "namespace": "geo",
                       "fields": [field("city", "string")]}),
        field("work", "geo.Address"),
        field("previous", {"type": "array", "items": "geo.Address"}),
        field("kind", {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}),
        field("other_kind", ["null", "Kind"]),
    ), version=1)
    address = {"type": "object", "properties": {"city": {"type": "string"}},
               "required": ["city"]}
    props = schema["properties"]
    assert props["home"] == address
    assert props["work"] == address
    assert props["previous"] == {"type": "array", "items": address}
    assert props["other_kind"] == {"type": ["string", "null"], "enum": ["A", "B", None]}
    assert props["home"] is not props["work"]


def test_recursive_type_is_jsonb_at_the_point_of_recursion() -> None:
    tree = {"type": "record", "name": "Tree", "fields": [
        field("label", "string"),
        field("children", {"type": "array", "items": "Tree"}),
        field("parent", ["null", "Tree"], default=None),
    ]}
    schema = json_schema_from_avro(record(field("root", tree), name="Forest"), version=1)
    root = schema["properties"]["root"]
    assert root["properties"]["children"] == {"type": "array",
                                              "items": {"x-weir-column-type": "jsonb"}}
    assert root["properties"]["parent"] == {"x-weir-column-type": "jsonb",
                                            "x-weir-avro-default": None}
    assert root["required"] == ["label", "children"]
    validate = fastjsonschema.compile(schema)
    leaf: dict[str, Any] = {"label": "b", "children": [], "parent": None}
    deep: dict[str, Any] = {"label": "a", "children": [leaf], "parent": None}
    assert validate({"root": deep}) == {"root": deep}


def test_top_level_recursion_and_columns() -> None:
    node = record(field("value", "long"), field("next", ["null", "Node"], default=None),
                  name="Node")
    schema = json_schema_from_avro(node, version=1)
    assert derive_columns(schema) == (Column("value", "bigint", False),
                                      Column("next", "jsonb", True))


def test_unsafe_field_name_is_left_for_contracts_to_refuse() -> None:
    schema = json_schema_from_avro(record(field("Bad_Name", "string")), version=1)
    assert list(schema["properties"]) == ["Bad_Name"]
    with pytest.raises(ContractError, match="not a safe column name"):
        derive_columns(schema)


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ("string", "not valid JSON"),
        ('"string"', "must be a record"),
        ({"type": "array", "items": "int"}, "must be a record"),
        ({"type": "record", "name": "R", "fields": [field("a", "Nope")]}, "not a valid Avro"),
        ({"type": "record", "name": "R", "fields": [field("a", "int", default="x")]},
         "not a valid Avro"),
    ],
)
def test_bad_schema_is_an_avro_schema_error(schema: Any, fragment: str) -> None:
    with pytest.raises(AvroSchemaError, match=fragment):
        json_schema_from_avro(schema, version=1)


# --- schema resolution ---------------------------------------------------------------------


def one(avro_type: Any, **extra: Any) -> dict[str, Any]:
    """A record of one field ``f``."""
    return record(field("f", avro_type, **extra))


def test_identical_schemas_are_compatible() -> None:
    assert avro_problems(ORDER, ORDER) == []
    assert avro_problems(json.dumps(ORDER), json.dumps(ORDER)) == []


def test_new_reader_field_needs_a_default() -> None:
    writer = record(field("a", "string"))
    assert avro_problems(writer, record(field("a", "string"), field("b", "int"))) == [
        "field 'b' is new in the reader and has no default"]
    assert avro_problems(writer, record(field("a", "string"),
                                        field("b", "int", default=0))) == []


def test_writer_only_fields_are_dropped() -> None:
    assert avro_problems(record(field("a", "string"), field("gone", "int")),
                         record(field("a", "string"))) == []


def test_reader_field_alias_finds_the_writer_field() -> None:
    writer = record(field("old_name", "long"))
    reader = record(field("new_name", "long", aliases=["older", "old_name"]))
    assert avro_problems(writer, reader) == []
    assert avro_problems(writer, record(field("new_name", "string", aliases=["old_name"]))) == [
        "'new_name': the writer's long cannot be read as string"]


@pytest.mark.parametrize(
    ("written", "read"),
    [("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
     ("long", "double"), ("float", "double"), ("string", "bytes"), ("bytes", "string")],
)
def test_promotion_is_allowed(written: str, read: str) -> None:
    assert avro_problems(one(written), one(read)) == []


@pytest.mark.parametrize(
    ("written", "read"),
    [("long", "int"), ("double", "float"), ("float", "long"), ("string", "int"),
     ("int", "string"), ("boolean", "int"), ("null", "string"), ("string", "null"),
     ("int", "boolean")],
)
def test_other_type_changes_are_problems(written: str, read: str) -> None:
    assert avro_problems(one(written), one(read)) == [
        f"'f': the writer's {written} cannot be read as {read}"]


def test_null_reads_as_null() -> None:
    assert avro_problems(one("null"), one("null")) == []
    assert avro_problems(one("null"), one(["null", "string"], default=None)) == []


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}


def test_enum_symbols() -> None:
    assert avro_problems(one(enum("a", "b")), one(enum("b", "a", "c"))) == []
    assert avro_problems(one(enum("a", "b", "c")), one(enum("a", "b"))) == [
        "'f': the writer's enum symbols ['c'] are not in the reader's enum, which has no "
        "default"]
    assert avro_problems(one(enum("a", "b", "c")), one(enum("a", "b", default="a"))) == []
    renamed = {**enum("a"), "name": "Other"}
    assert avro_problems(one(enum("a")), one(renamed)) == [
        "'f': the writer's enum Status cannot be read as enum Other (the names differ and the "
        "reader has no such alias)"]
    assert avro_problems(one(enum("a")), one({**renamed, "aliases": ["Status"]})) == []


def test_nested_record_paths() -> None:
    def address(*fields: dict[str, Any]) -> dict[str, Any]:
        return record(field("address", record(*fields, name="Address")))

    assert avro_problems(address(field("city", "string")), address(field("city", "int"))) == [
        "'address.city': the writer's string cannot be read as int"]
    assert avro_problems(address(field("city", "string")),
                         address(field("city", "string"), field("zip", "string"))) == [
        "field 'address.zip' is new in the reader and has no default"]


def test_arrays_and_maps_by_their_items_and_values() -> None:
    items = {"type": "array", "items": record(field("qty", "int"), name="Item")}
    wider = {"type": "array", "items": record(field("qty", "long"), name="Item")}
    assert avro_problems(one(items), one(wider)) == []
    assert avro_problems(one(wider), one(items)) == [
        "'f[].qty': the writer's long cannot be read as int"]
    assert avro_problems(one({"type": "map", "values": "int"}),
                         one({"type": "map", "values": "double"})) == []
    assert avro_problems(one({"type": "map", "values": "string"}),
                         one({"type": "map", "values": "int"})) == [
        "'f{}': the writer's string cannot be read as int"]
    assert avro_problems(one({"type": "array", "items": "int"}),
                         one({"type": "map", "values": "int"})) == [
        "'f': the writer's array cannot be read as map"]


def test_unions() -> None:
    # Writer not a union: must match some reader branch.
    assert avro_problems(one("string"), one(["null", "string"], default=None)) == []
    assert avro_problems(one("int"), one(["null", "long"], default=None)) == []
    assert avro_problems(one("int"), one(["null", "string"], default=None)) == [
        "'f': the writer's int matches no branch of the reader's union [null, string]"]
    # Writer a union: every branch must match (the reader's only type or one of its branches).
    assert avro_problems(one(["null", "string"]), one(["string", "null"])) == []
    assert avro_problems(one(["int", "string"]), one(["string", "long", "null"])) == []
    assert avro_problems(one(["null", "string"]), one("string")) == [
        "'f': the writer's union branch null cannot be read as string"]
    assert avro_problems(one(["null", "string", "int"]), one(["null", "string"])) == [
        "'f': the writer's union branch int matches no branch of the reader's union "
        "[null, string]"]
    assert avro_problems(one(["int", "long"]), one("long")) == []
    # The chosen branch is resolved deeply.
    w_rec = ["null", record(field("a", "string"), name="In")]
    r_rec = ["null", record(field("a", "string"), field("b", "int"), name="In")]
    assert avro_problems(one(w_rec), one(r_rec)) == [
        "field 'f.b' is new in the reader and has no default"]


def test_fixed_needs_same_size_and_name() -> None:
    assert avro_problems(one(FIXED), one(FIXED)) == []
    assert avro_problems(one(FIXED), one({**FIXED, "size": 8})) == [
        "'f': the writer's fixed Sixteen cannot be read as fixed Sixteen (size 16 in the "
        "writer, 8 in the reader)"]
    assert avro_problems(one(FIXED), one({**FIXED, "name": "Other"})) == [
        "'f': the writer's fixed Sixteen cannot be read as fixed Other (the names differ and "
        "the reader has no such alias)"]
    assert avro_problems(one(FIXED), one("bytes")) == [
        "'f': the writer's fixed Sixteen cannot be read as bytes"]


def decimal_bytes(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def test_decimal_needs_equal_precision_and_scale() -> None:
    assert avro_problems(one(decimal_bytes(12, 2)), one(decimal_bytes(12, 2))) == []
    assert avro_problems(one(decimal_bytes(12, 2)), one(decimal_bytes(14, 2))) == [
        "'f': decimal(12,2) in the writer is decimal(14,2) in the reader; precision and scale "
        "must match"]
    assert avro_problems(one(decimal_bytes(12, 2)), one(decimal_bytes(12, 3))) != []
    # In unions too.
    assert avro_problems(one(["null", decimal_bytes(12, 2)]),
                         one(["null", decimal_bytes(10, 2)])) != []
    fixed_dec = {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal",
                 "precision": 12, "scale": 2}
    assert avro_problems(one(fixed_dec), one({**fixed_dec, "scale": 1})) != []
    assert avro_problems(one(fixed_dec), one(decimal_bytes(12, 2))) == [
        "'f': the writer's fixed D cannot be read as bytes decimal(12,2)"]


def test_record_names_must_match_or_be_aliased() -> None:
    assert avro_problems(record(field("a", "int"), name="Old"),
                         record(field("a", "int"), name="New")) == [
        "the top-level schema: the writer's record Old cannot be read as record New (the names "
        "differ and the reader has no such alias)"]
    assert avro_problems(record(field("a", "int"), name="Old"),
                         record(field("a", "int"), name="New", aliases=["Old"])) == []
    # Namespaces do not count: the unqualified names match.
    assert avro_problems(record(field("a", "int"), name="a.R"),
                         record(field("a", "int"), name="b.R")) == []


def test_recursive_schemas_resolve_without_looping() -> None:
    w_node = record(field("value", "int"), field("next", ["null", "Node"]), name="Node")
    r_node = record(field("value", "long"), field("next", ["null", "Node"]),
                    field("tag", "string", default=""), name="Node")
    assert avro_problems(w_node, r_node) == []
    bad = record(field("value", "string"), field("next", ["null", "Node"]), name="Node")
    assert avro_problems(w_node, bad) == ["'value': the writer's int cannot be read as string"]


def test_several_problems_are_all_reported() -> None:
    problems = avro_problems(ORDER, {**ORDER, "fields": [
        *[f for f in ORDER["fields"] if f["name"] not in {"seq", "status"}],
        field("seq", "int"), field("status", enum("created", "paid"), ),
        field("region", "string")]})
    assert problems == [
        "'seq': the writer's long cannot be read as int",
        "'status': the writer's enum symbols ['shipped', 'cancelled'] are not in the reader's "
        "enum, which has no default",
        "field 'region' is new in the reader and has no default",
    ]


def roundtrip(writer: Any, reader: Any, datum: Any) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), datum)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, fastavro.parse_schema(writer),
                                      fastavro.parse_schema(reader))


@pytest.mark.parametrize(
    ("writer", "reader", "datum", "read"),
    [
        (one("int"), one("long"), {"f": 5}, {"f": 5}),
        (one("long"), one("double"), {"f": 5}, {"f": 5.0}),
        (one("string"), one("bytes"), {"f": "hé"}, {"f": "hé".encode()}),
        (one(enum("a", "b")), one(enum("a", "z", default="z")), {"f": "b"}, {"f": "z"}),
        (record(field("a", "int")), record(field("a", "int"), field("b", "string", default="x")),
         {"a": 1}, {"a": 1, "b": "x"}),
        (record(field("old", "int")), record(field("new", "int", aliases=["old"])),
         {"old": 1}, {"new": 1}),
        (one("string"), one(["null", "string"]), {"f": "s"}, {"f": "s"}),
        (one(["null", "int"]), one(["null", "long"]), {"f": 3}, {"f": 3}),
        (one({"type": "array", "items": "int"}), one({"type": "array", "items": "float"}),
         {"f": [1]}, {"f": [1.0]}),
    ],
)
def test_compatible_verdicts_agree_with_fastavro(writer: Any, reader: Any, datum: Any,
                                                 read: Any) -> None:
    assert avro_problems(writer, reader) == []
    assert roundtrip(writer, reader, datum) == read


@pytest.mark.parametrize(
    ("writer", "reader", "datum"),
    [
        (one("long"), one("int"), {"f": 5}),
        (one("string"), one("int"), {"f": "s"}),
        (one(enum("a", "b")), one(enum("a")), {"f": "b"}),
        (record(field("a", "int")), record(field("a", "int"), field("b", "string")), {"a": 1}),
        (one("int"), one(["null", "string"]), {"f": 1}),
        (one(["null", "string"]), one("string"), {"f": None}),
        (one(FIXED), one({**FIXED, "size": 8}), {"f": b"0" * 16}),
        (one({"type": "map", "values": "string"}), one({"type": "map", "values": "long"}),
         {"f": {"k": "v"}}),
        (record(field("a", "int"), name="Old"), record(field("a", "int"), name="New"), {"a": 1}),
    ],
)
def test_incompatible_verdicts_agree_with_fastavro(writer: Any, reader: Any,
                                                   datum: Any) -> None:
    assert avro_problems(writer, reader) != []
    with pytest.raises(SchemaResolutionError):
        roundtrip(writer, reader, datum)


def test_order_evolution_agrees_with_fastavro() -> None:
    reader = {**ORDER, "fields": [
        *ORDER["fields"],
        field("note", ["null", "string"], default=None),
        field("priority", "int", default=0),
    ]}
    assert avro_problems(ORDER, reader) == []
    datum = {
        "event_id": "0b5c6f1e-4d1a-4c55-9a43-3a1e0f0c9b11", "customer_id": "c", "seq": 1,
        "occurred_at": datetime(2026, 11, 25, 10, tzinfo=UTC), "order_id": "o",
        "status": "paid", "amount": Decimal("19.99"), "currency": "EUR",
        "items": [{"sku": "a", "qty": 1, "price": 1.5}], "channel": None,
    }
    read = roundtrip(ORDER, reader, datum)
    assert read["amount"] == Decimal("19.99")
    assert (read["note"], read["priority"]) == (None, 0)
    assert reader_defaults(ORDER, reader) == {"note": None, "priority": 0}
    assert avro_problems(reader, ORDER) == []  # the old reader drops the new fields


# --- reader defaults -----------------------------------------------------------------------


def test_reader_defaults_are_only_for_fields_the_writer_lacks() -> None:
    writer = record(field("a", "int"), field("old", "string"))
    reader = record(
        field("a", "int", default=9),             # the writer has it
        field("renamed", "string", default="r", aliases=["old"]),  # by alias
        field("b", "string", default="x"),
        field("c", "long"),                       # no default: a problem, not a default
        field("d", ["null", "string"], default=None),
    )
    assert reader_defaults(writer, reader) == {"b": "x", "d": None}


def test_reader_defaults_take_the_json_shape() -> None:
    fields = [
        field("n", "null", default=None),
        field("flag", "boolean", default=True),
        field("i", "int", default=-1),
        field("dbl", "double", default=1),
        field("s", "string", default="text"),
        field("raw", "bytes", default="\u0000\u00ffA"),
        field("fx", {"type": "fixed", "name": "Two", "size": 2}, default="\u00ff\u0001"),
        field("e", enum("a", "b"), default="b"),
        field("dec", decimal_bytes(6, 2), default="\u0004\u00d2"),  # 1234 → 12.34
        field("neg", decimal_bytes(6, 3), default="\u00ff\u00ff"),  # -1 → -0.001
        field("ts_ms", {"type": "long", "logicalType": "timestamp-millis"},
              default=1_764_064_800_123),
        field("ts_us", {"type": "long", "logicalType": "timestamp-micros"}, default=0),
        field("lts", {"type": "long", "logicalType": "local-timestamp-micros"}, default=1),
        field("day", {"type": "int", "logicalType": "date"}, default=20_417),
        field("t_ms", {"type": "int", "logicalType": "time-millis"}, default=36_000_500),
        field("t_us", {"type": "long", "logicalType": "time-micros"}, default=1),
        field("u", {"type": "string", "logicalType": "uuid"},
              default="0B5C6F1E-4D1A-4C55-9A43-3A1E0F0C9B11"),
        field("arr", {"type": "array", "items": "bytes"}, default=["\u0001"]),
        field("m", {"type": "map", "values": "double"}, default={"k": 2}),
        field("rec", record(field("x", "int"), field("y", "string", default="dy"), name="In"),
              default={"x": 1}),
        field("un", ["string", "null"], default="first"),
        field("unn", ["null", "string"], default=None),
    ]
    defaults = reader_defaults(record(field("other", "int")), record(*fields))
    assert defaults == {
        "n": None, "flag": True, "i": -1, "dbl": 1.0, "s": "text",
        "raw": base64.b64encode(b"\x00\xffA").decode(),
        "fx": base64.b64encode(b"\xff\x01").decode(),
        "e": "b", "dec": Decimal("12.34"), "neg": Decimal("-0.001"),
        "ts_ms": "2025-11-25T10:00:00.123000+00:00",
        "ts_us": "1970-01-01T00:00:00+00:00",
        "lts": "1970-01-01T00:00:00.000001+00:00",
        "day": "2025-11-25", "t_ms": "10:00:00.500000", "t_us": "00:00:00.000001",
        "u": "0b5c6f1e-4d1a-4c55-9a43-3a1e0f0c9b11",
        "arr": ["AQ=="], "m": {"k": 2.0}, "rec": {"x": 1, "y": "dy"},
        "un": "first", "unn": None,
    }
    assert isinstance(defaults["dbl"], float)
    assert str(defaults["dec"]) == "12.34"  # exact, with its scale
    # And the contract accepts them.
    reader = record(*fields)
    validate = fastjsonschema.compile(json_schema_from_avro(reader, version=1))
    assert validate(defaults) == defaults


def json_shaped(value: Any) -> Any:
    """The decoder's conventions, applied to what fastavro reads (for cross-checking)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date | time | uuid.UUID):
        return value.isoformat() if not isinstance(value, uuid.UUID) else str(value)
    if isinstance(value, list):
        return [json_shaped(v) for v in value]
    if isinstance(value, dict):
        return {k: json_shaped(v) for k, v in value.items()}
    return value


def test_reader_defaults_equal_fastavros_reading_of_the_same_avro_json() -> None:
    # fastavro fills a missing field with the raw Avro JSON default (bytes as code points,
    # timestamps as numbers), so compare with its reading of those values as Avro JSON
    # (the same encoding as a default, outside unions), shaped as the decoder shapes data.
    writer = record(field("a", "int"))
    added = [
        field("raw", "bytes", default="\u00ff\u0000"),
        field("dec", decimal_bytes(9, 4), default="\u0001\u0000\u0000"),
        field("ts", {"type": "long", "logicalType": "timestamp-micros"},
              default=1_764_064_800_000_001),
        field("lts", {"type": "long", "logicalType": "local-timestamp-millis"}, default=-1),
        field("day", {"type": "int", "logicalType": "date"}, default=-1),
        field("t", {"type": "int", "logicalType": "time-millis"}, default=1_001),
        field("u", {"type": "string", "logicalType": "uuid"},
              default="0b5c6f1e-4d1a-4c55-9a43-3a1e0f0c9b11"),
        field("e", enum("a", "b"), default="a"),
        field("nested", {"type": "array", "items": {"type": "map", "values": "bytes"}},
              default=[{"k": "\u0002"}]),
        field("opt", ["null", "long"], default=None),
    ]
    reader = record(field("a", "int"), *added)
    assert roundtrip(writer, reader, {"a": 1})["raw"] == "\u00ff\u0000"
    as_json = json.dumps({"a": 1, **{f["name"]: f["default"] for f in added}})
    [read] = list(fastavro.json_reader(io.StringIO(as_json), fastavro.parse_schema(reader)))
    assert isinstance(read, dict)
    expected = {f["name"]: json_shaped(read[f["name"]]) for f in added}
    assert reader_defaults(writer, reader) == expected
    assert expected["dec"] == Decimal("6.5536")
    assert expected["lts"] == "1969-12-31T23:59:59.999000+00:00"


def test_reader_defaults_need_records() -> None:
    with pytest.raises(AvroSchemaError, match="must be a record"):
        reader_defaults('"int"', record(field("a", "int")))
