"""Debezium's column types: the contract derived from a change event's schema, and the
logical-typed values read as that contract's columns take them."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import fastjsonschema
import pytest

from processor.contracts import derive_columns
from processor.core.errors import EventRejected
from processor.decode.debezium_types import contract_of, normalize, record_struct


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
