"""Mapped columns: a typed value from a path into the event, through the decoder."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from processor.contracts import ContractError, load_contracts
from processor.core.errors import ConfigError, EventRejected
from processor.core.pgtime import micros
from processor.core.settings import load_settings
from processor.decode.decoder import Decoder
from processor.transform.loader import load_chains

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = {
    "type": "object", "required": ["id", "placed_ms"],
    "properties": {
        "id": {"type": "string"},
        "placed_ms": {"type": "integer"},
        "shipping": {"type": ["object", "null"]},
        "lines": {"type": "array"},
        "local": {"type": "string"},
    },
}
MAPPED = [
    {"name": "country", "path": "shipping.address.country", "type": "text"},
    {"name": "first_sku", "path": "lines[0].sku", "type": "text"},
    {"name": "first_qty", "path": "lines[0].qty", "type": "integer", "default": 1},
    {"name": "placed_at", "path": "placed_ms", "type": "timestamptz",
     "time_unit": "milliseconds"},
    {"name": "local_at", "path": "local", "type": "timestamptz", "time_zone": "Europe/Paris"},
    {"name": "weight", "path": "shipping.weight_kg", "type": "numeric"},
]


def config(tmp_path: Path, mapped: list[dict[str, Any]] | None = None,
           **changes: Any) -> Path:
    schema = tmp_path / "shipment.json"
    schema.write_text(orjson.dumps(SCHEMA).decode())
    settings = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    for et in settings["event_types"].values():
        et["schema_file"] = str(ROOT / "schemas" / Path(et["schema_file"]).name)
    settings["event_types"]["shipment"] = {
        "schema_file": str(schema), "table": "shipments", "id_field": "id",
        "time_field": "placed_at", "columns": MAPPED if mapped is None else mapped, **changes}
    settings["topics"].append({"name": "weir.shipments", "event_type": "shipment"})
    path = tmp_path / "weir.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def decoder(path: Path) -> Decoder:
    settings = load_settings(path)
    return Decoder(settings, load_contracts(settings), load_chains(settings))


def row(dec: Decoder, event: dict[str, Any]) -> dict[str, Any]:
    decoded = dec.decode("weir.shipments", 0, 7, 1_764_064_800_000, orjson.dumps(event))
    assert decoded is not None
    names = ["id", "placed_ms", "shipping", "lines", "local", *(m["name"] for m in MAPPED),
             "event_time"]
    return dict(zip(names, decoded[1], strict=False))


def test_mapped_columns_take_their_paths_values(tmp_path: Path) -> None:
    dec = decoder(config(tmp_path))
    got = row(dec, {"id": "s1", "placed_ms": 1_764_064_800_123,
                    "shipping": {"address": {"country": "FR"}, "weight_kg": 2.5},
                    "lines": [{"sku": "a", "qty": 3}, {"sku": "b"}],
                    "local": "2026-07-01T12:00:00"})
    assert got["country"] == "FR"
    assert (got["first_sku"], got["first_qty"]) == ("a", 3)
    assert got["placed_at"] == micros(datetime(2025, 11, 25, 10, 0, 0, 123000, tzinfo=UTC))
    assert got["event_time"] == got["placed_at"]  # the partitioning time, from an epoch
    # Paris is UTC+2 in July: noon there is 10:00 UTC.
    assert got["local_at"] == micros(datetime(2026, 7, 1, 10, tzinfo=UTC))
    assert got["weight"] == Decimal("2.5")


def test_what_is_absent_is_null_or_the_default(tmp_path: Path) -> None:
    dec = decoder(config(tmp_path))
    got = row(dec, {"id": "s1", "placed_ms": 0, "shipping": None, "lines": []})
    assert (got["country"], got["first_sku"], got["weight"], got["local_at"]) == (
        None, None, None, None)
    assert got["first_qty"] == 1  # the default
    got = row(dec, {"id": "s1", "placed_ms": 0, "shipping": {"address": None},
                    "lines": [{"sku": None, "qty": None}]})
    assert (got["country"], got["first_sku"], got["first_qty"]) == (None, None, 1)


@pytest.mark.parametrize(("event", "fragment"), [
    ({"shipping": {"address": "12 rue X"}}, "path 'shipping.address.country': "
     "shipping.address is a string, not an object"),
    ({"lines": [["a"]]}, "path 'lines[0].sku': lines[0] is an array, not an object"),
    ({"lines": [{"sku": {"code": "a"}}]}, "path 'lines[0].sku': {'code': 'a'} is an object, "
     "not a string"),
    ({"lines": [{"qty": 2**40}]}, "path 'lines[0].qty': 1099511627776 is out of range"),
    ({"placed_ms": 10**17}, "path 'placed_ms': 100000000000000000 milliseconds since 1970 "
     "is outside the years 1 to 9999"),
    ({"local": "2026-07-01"}, None),  # a date alone is a date-time at midnight: fine
    ({"local": "noon"}, "path 'local': 'noon' is not a valid date-time"),
    ({"shipping": {"weight_kg": "heavy"}}, "path 'shipping.weight_kg': 'heavy' is not a "
     "number"),
])
def test_a_bad_mapped_value_is_a_dead_letter_naming_its_path(
        tmp_path: Path, event: dict[str, Any], fragment: str | None) -> None:
    dec = decoder(config(tmp_path))
    full = {"id": "s1", "placed_ms": 5, **event}
    if fragment is None:
        row(dec, full)
        return
    with pytest.raises(EventRejected) as refused:
        row(dec, full)
    assert refused.value.reason == "conversion_error"
    assert fragment in str(refused.value)


def test_an_absent_mapped_time_field_is_a_dead_letter(tmp_path: Path) -> None:
    mapped = [{"name": "placed_at", "path": "shipping.at", "type": "timestamptz",
               "time_unit": "seconds"}]
    dec = decoder(config(tmp_path, mapped))
    with pytest.raises(EventRejected, match="the time field is absent"):
        dec.decode("weir.shipments", 0, 7, 1_764_064_800_000,
                   orjson.dumps({"id": "s1", "placed_ms": 1}))
    _, values = dec.decode("weir.shipments", 0, 7, 1_764_064_800_000, orjson.dumps(
        {"id": "s1", "placed_ms": 1, "shipping": {"at": 1.5}})) or ("", ())
    assert values[5] == micros(datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC))


@pytest.mark.parametrize(("mapped", "message"), [
    ([{"name": "id", "path": "x", "type": "text"}], "the schema has a property 'id'"),
    ([{"name": "raw", "path": "x", "type": "text"}], "a column Weir adds itself"),
])
def test_a_mapped_name_taken_is_refused(tmp_path: Path, mapped: list[dict[str, Any]],
                                        message: str) -> None:
    settings = load_settings(config(tmp_path, [*mapped, *MAPPED]))
    with pytest.raises(ContractError, match=message):
        load_contracts(settings)


@pytest.mark.parametrize(("mapped", "message"), [
    ({"name": "x", "path": "a..b", "type": "text"}, "is not a key followed by"),
    ({"name": "x", "path": "a[-1]", "type": "text"}, "is not a key followed by"),
    ({"name": "x", "path": "a", "type": "text", "time_unit": "seconds"},
     "for a column of type timestamptz"),
    ({"name": "x", "path": "a", "type": "timestamptz", "time_zone": "Mars/Olympus"},
     "not an IANA time zone"),
    ({"name": "x", "path": "a", "type": "timestamptz", "time_zone": "UTC",
      "time_unit": "seconds"}, "set one"),
    ({"name": "X", "path": "a", "type": "text"}, "not a safe SQL identifier"),
    ({"name": "x", "path": "a", "type": "integer[]"}, "type"),
])
def test_a_bad_mapping_is_a_config_error(tmp_path: Path, mapped: dict[str, Any],
                                         message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(config(tmp_path, [mapped]))


def test_a_default_its_column_cannot_hold_fails_at_start(tmp_path: Path) -> None:
    mapped = [{"name": "n", "path": "a", "type": "integer", "default": "many"}, *MAPPED]
    with pytest.raises(ConfigError, match=r"columns \(n\): its default does not fit"):
        decoder(config(tmp_path, mapped))


def test_both_row_builders_agree(tmp_path: Path) -> None:
    dec = decoder(config(tmp_path))
    plan = dec._plans["shipment"]
    event = {"id": "s1", "placed_ms": 77, "shipping": {"address": {"country": "FR"}},
             "lines": [{"sku": "a"}]}
    raw = orjson.dumps(event)
    fast = plan.build(event, "t", 0, 1, 1_764_064_800_000, raw)
    generic = dec._row(plan, event, "t", 0, 1, 1_764_064_800_000, raw)
    assert fast == generic


RECORD = [
    {"name": "placed_at", "path": "placed_ms", "type": "timestamptz",
     "time_unit": "milliseconds"},
    {"name": "tenant", "source": "header", "header": "tenant", "type": "text"},
    {"name": "trace", "source": "header", "header": "trace", "type": "bytea"},
    {"name": "attempt", "source": "header", "header": "attempt", "type": "integer",
     "default": 0},
    {"name": "order_key", "source": "key", "type": "text"},
    {"name": "key_region", "source": "key", "path": "region", "type": "text"},
    {"name": "from_topic", "source": "topic", "type": "text"},
    {"name": "sent_at", "source": "timestamp", "type": "timestamptz"},
]


def record_row(dec: Decoder, key: bytes | None, headers: list[tuple[str, bytes | None]]
               ) -> dict[str, Any]:
    decoded = dec.decode("weir.shipments", 0, 7, 1_764_064_800_000,
                         orjson.dumps({"id": "s1", "placed_ms": 5}), headers, key)
    assert decoded is not None
    names = ["id", "placed_ms", "shipping", "lines", "local", *(m["name"] for m in RECORD)]
    return dict(zip(names, decoded[1], strict=False))


def test_columns_from_the_record_itself(tmp_path: Path) -> None:
    dec = decoder(config(tmp_path, RECORD))
    got = record_row(dec, b'{"region":"eu","n":1}', [
        ("tenant", b"old"), ("trace", b"\x00\xff"), ("tenant", b"acme"), ("attempt", b"3")])
    assert got["tenant"] == "acme"  # the last header of that name
    assert got["trace"] == b"\x00\xff"  # bytes as they are
    assert got["attempt"] == 3
    assert got["order_key"] == '{"region":"eu","n":1}'
    assert got["key_region"] == "eu"
    assert got["from_topic"] == "weir.shipments"
    assert got["sent_at"] == micros(datetime.fromtimestamp(1_764_064_800, UTC))
    got = record_row(dec, None, [("tenant", None)])
    assert (got["tenant"], got["trace"], got["attempt"], got["order_key"],
            got["key_region"]) == (None, None, 0, None, None)


@pytest.mark.parametrize(("key", "headers", "fragment"), [
    (None, [("tenant", b"\xff\xfe")], "field 'tenant': header 'tenant' b'\\xff\\xfe' is "
     "not UTF-8 text"),
    (None, [("attempt", b"three")], "field 'attempt': header 'attempt' 'three' is not JSON"),
    (None, [("attempt", b"1.5")], "header 'attempt': 1.5 is a number, not an integer"),
    (b"plain", [], "field 'key_region': the key 'plain' is not JSON"),
    (b'["eu"]', [], "the key's path 'region': the value itself is an array, not an object"),
])
def test_a_bad_record_value_is_a_dead_letter(tmp_path: Path, key: bytes | None,
                                             headers: list[tuple[str, bytes | None]],
                                             fragment: str) -> None:
    mapped = [m for m in RECORD if m["name"] != "order_key"]
    dec = decoder(config(tmp_path, mapped))
    with pytest.raises(EventRejected) as refused:
        dec.decode("weir.shipments", 0, 7, 1_764_064_800_000,
                   orjson.dumps({"id": "s1", "placed_ms": 5}), headers, key)
    assert refused.value.reason == "conversion_error"
    assert fragment in str(refused.value), str(refused.value)


@pytest.mark.parametrize(("mapped", "message"), [
    ({"name": "x", "source": "header", "type": "text"}, "header names the header"),
    ({"name": "x", "header": "h", "path": "a", "type": "text"}, "header names the header"),
    ({"name": "x", "source": "topic", "type": "bigint"}, "a column of the topic is text"),
    ({"name": "x", "source": "timestamp", "type": "text"}, "record's timestamp is timestamptz"),
    ({"name": "x", "path": "a", "type": "bytea"}, "bytea holds a key's or a header's bytes"),
    ({"name": "x", "source": "topic", "path": "a", "type": "text"}, "has no path"),
    ({"name": "x", "type": "text"}, "a column from the event needs a path"),
])
def test_a_bad_record_mapping_is_a_config_error(tmp_path: Path, mapped: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(config(tmp_path, [mapped]))
