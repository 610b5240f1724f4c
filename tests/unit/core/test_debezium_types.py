"""Debezium's column types: the contract derived from a change event's schema, and the
logical-typed values read as that contract's columns take them."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import fastjsonschema
import orjson
import pytest

from processor.contracts import derive_columns
from processor.core.debezium_types import (
    connect_schema_of_avro,
    contract_of,
    normalize,
    record_struct,
)
from processor.core.errors import EventRejected
from processor.registry.client import RegisteredSchema
from processor.registry.contract import derive


def field(name: str, kind: str, logical: str | None = None, optional: bool = True,
          **parameters: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"field": name, "type": kind, "optional": optional}
    if logical:
        out["name"] = logical
    if parameters:
        out["parameters"] = {k: str(v) for k, v in parameters.items()}
    return out


AFTER = {"type": "struct", "optional": True, "name": "src.public.things.Value", "fields": [
    field("id", "int64", optional=False),
    field("small", "int16"),
    field("name", "string"),
    field("ratio", "double"),
    field("share", "float"),
    field("flag", "boolean"),
    field("born", "int32", "io.debezium.time.Date"),
    field("at_ms", "int64", "io.debezium.time.Timestamp"),
    field("at_us", "int64", "io.debezium.time.MicroTimestamp"),
    field("at_ns", "int64", "io.debezium.time.NanoTimestamp"),
    field("zoned", "string", "io.debezium.time.ZonedTimestamp"),
    field("clock", "int64", "io.debezium.time.MicroTime"),
    field("price", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2, precision=10),
    field("any_numeric", "struct", "io.debezium.data.VariableScaleDecimal"),
    field("doc", "string", "io.debezium.data.Json"),
    field("ref", "string", "io.debezium.data.Uuid"),
    field("mood", "string", "io.debezium.data.Enum"),
    field("tags", "array"),
]}
ENVELOPE = {"type": "struct", "fields": [
    {**AFTER, "field": "before"}, {**AFTER, "field": "after"},
    {"field": "op", "type": "string", "optional": False}]}


def unscaled(value: int) -> str:
    return base64.b64encode(value.to_bytes(8, "big", signed=True).lstrip(b"\x00") or b"\x00"
                            ).decode()


def test_the_contract_types_each_column_as_the_mapping_says() -> None:
    contract = contract_of(AFTER, title="things")
    columns = {c.name: (c.pg_type, c.nullable) for c in derive_columns(contract)}
    assert columns == {
        "id": ("bigint", False), "small": ("integer", True), "name": ("text", True),
        "ratio": ("double precision", True), "share": ("double precision", True),
        "flag": ("boolean", True),
        "born": ("date", True), "at_ms": ("timestamptz", True),
        "at_us": ("timestamptz", True), "at_ns": ("timestamptz", True),
        "zoned": ("timestamptz", True), "clock": ("text", True),
        "price": ("numeric", True), "any_numeric": ("numeric", True),
        "doc": ("jsonb", True), "ref": ("uuid", True), "mood": ("text", True),
        "tags": ("jsonb", True)}
    assert contract["required"] == ["id"]
    assert record_struct(ENVELOPE, "after") is not None


def test_logical_values_are_read_as_their_columns_take_them() -> None:
    record = {"id": 1, "small": 2, "name": "a", "ratio": 0.5, "flag": True,
              "born": 20_000, "at_ms": 1_764_064_800_123, "at_us": 1_764_064_800_123_456,
              "at_ns": 1_764_064_800_123_456_789, "zoned": "2026-11-25T10:00:00Z",
              "clock": 3_723_000_001, "price": unscaled(-12_345),
              "any_numeric": {"scale": 3, "value": unscaled(1_000_001)},
              "doc": '{"a": [1, 2]}', "ref": "6f1c3e58-8e0b-4d0c-9b0e-3f4e2f1a9b7c",
              "mood": "happy", "tags": [1]}
    normalize(record, AFTER)
    assert record["born"] == "2024-10-04"
    assert record["at_ms"] == "2025-11-25T10:00:00.123000Z"
    assert record["at_us"] == "2025-11-25T10:00:00.123456Z"
    assert record["at_ns"] == "2025-11-25T10:00:00.123456Z"
    assert record["clock"] == "01:02:03.000001"
    assert Decimal(record["price"]) == Decimal("-123.45")
    assert Decimal(record["any_numeric"]) == Decimal("1000.001")
    assert record["doc"] == {"a": [1, 2]}
    assert record["zoned"] == "2026-11-25T10:00:00Z"
    # The normalised record is valid against the derived contract.
    fastjsonschema.compile(contract_of(AFTER))(record)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("at_us", 10**18 * 300, "'at_us' (io.debezium.time.MicroTimestamp)"),  # past 9999
    ("price", "not base64!", "'price' (org.apache.kafka.connect.data.Decimal)"),
    ("born", "2024-01-01", "'born' (io.debezium.time.Date)"),
    ("clock", -5, "'clock' (io.debezium.time.MicroTime)"),
])
def test_a_value_its_type_cannot_be_is_a_dead_letter(name: str, value: Any,
                                                     message: str) -> None:
    with pytest.raises(EventRejected) as caught:
        normalize({"id": 1, name: value}, AFTER)
    assert caught.value.reason == "conversion_error"
    assert message in str(caught.value)


# A Debezium envelope as a Kafka Connect Avro converter registers it: the row record named
# once (in before) and referred to by name (in after), Connect's names and parameters kept.
AVRO_ENVELOPE = {"type": "record", "name": "Envelope", "namespace": "src.public.things",
                 "fields": [
    {"name": "before", "default": None, "type": ["null", {
        "type": "record", "name": "Value", "connect.name": "src.public.things.Value",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": ["null", "string"], "default": None},
            {"name": "born", "type": ["null", {"type": "int", "connect.version": 1,
                                               "connect.name": "io.debezium.time.Date"}]},
            {"name": "day", "type": ["null", {"type": "int", "logicalType": "date",
                                              "connect.name":
                                                  "org.apache.kafka.connect.data.Date"}]},
            {"name": "price", "type": ["null", {
                "type": "bytes", "scale": 2, "precision": 12, "logicalType": "decimal",
                "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
                "connect.name": "org.apache.kafka.connect.data.Decimal"}]},
            {"name": "tag", "type": ["null", {"type": "string",
                                              "connect.name": "io.debezium.data.Uuid"}]},
            {"name": "tags", "type": ["null", {"type": "array", "items": "string"}]},
        ]}]},
    {"name": "after", "type": ["null", "Value"], "default": None},
    {"name": "source", "type": {"type": "record", "name": "Source", "namespace":
                                "io.debezium.connector.postgresql",
                                "fields": [{"name": "lsn", "type": ["null", "long"]}]}},
    {"name": "op", "type": "string"},
]}


def test_an_avro_envelope_reads_as_the_json_converters_schema() -> None:
    """Connect's Avro converters keep Connect's schema inside Avro's: read back, the mirror's
    contract and the value reading are the JSON converter's."""
    connect = connect_schema_of_avro(AVRO_ENVELOPE)
    after = record_struct(connect, "after")
    assert after is not None
    fields = {f["field"]: f for f in after["fields"]}
    assert fields["id"] == {"type": "int64", "optional": False, "field": "id"}
    assert fields["born"]["name"] == "io.debezium.time.Date"
    assert fields["price"]["parameters"]["scale"] == "2"
    assert fields["day"]["converted"]  # Avro's reader made the date text already
    contract = contract_of(after)
    assert {n: p.get("x-weir-column-type", "text") for n, p in
            contract["properties"].items()} == {
        "id": "bigint", "name": "text", "born": "date", "day": "date", "price": "numeric",
        "tag": "uuid", "tags": "jsonb"}
    assert contract["required"] == ["id"]
    # As the Avro reader gives a row: days as a number (Debezium's own Date), a Connect Date
    # as text (Avro's date), a decimal as a float or a Decimal.
    row: dict[str, Any] = {"id": 1, "name": None, "born": 7, "day": "1970-01-08",
                           "price": 12.5, "tag": None, "tags": ["a"]}
    normalize(row, after)
    assert (row["born"], row["day"], row["price"]) == ("1970-01-08", "1970-01-08", "12.5")
    wide: dict[str, Any] = {"id": 2, "price": Decimal("12345678901234567.25")}
    normalize(wide, after)
    assert wide["price"] == "12345678901234567.25"


def test_a_registry_subject_of_change_events_is_its_after_rows_contract() -> None:
    """``registry_subject`` with ``envelope: debezium``: the contract is the row's, the
    reader the whole envelope; only Avro's envelopes are read."""
    envelope = RegisteredSchema(5, "AVRO", orjson.dumps(AVRO_ENVELOPE).decode())
    contract, reader = derive(envelope, 3, None, "debezium")
    assert list(contract["properties"]) == ["id", "name", "born", "day", "price", "tag", "tags"]
    assert contract["version"] == 3
    assert reader == AVRO_ENVELOPE
    with pytest.raises(ValueError, match="no 'after' record"):
        derive(RegisteredSchema(6, "AVRO", orjson.dumps(
            {"type": "record", "name": "R", "fields": []}).decode()), 1, None, "debezium")
    with pytest.raises(ValueError, match="PROTOBUF is not read"):
        derive(RegisteredSchema(7, "PROTOBUF", 'syntax = "proto3";'), 1, None, "debezium")
