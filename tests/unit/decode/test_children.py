"""Child tables: the config's checks, the child rows the decoder builds, their DDL and SQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.commands.check_event import check_event
from processor.contracts import ContractError, load_contracts
from processor.core.errors import ConfigError, EventRejected
from processor.core.settings import load_settings
from processor.decode.decoder import Decoder
from processor.schema.tables import partition_function_ddl, table_spec, target_ddl
from processor.transform.loader import load_chains
from tests.unit.decode.test_mapped import config

LINES = {"table": "shipment_lines", "path": "parts", "max_items": 3,
         "columns": [{"name": "sku", "path": "sku", "type": "text"},
                     {"name": "qty", "path": "qty", "type": "integer", "default": 1},
                     {"name": "seen_at", "path": "seen_ms", "type": "timestamptz",
                      "time_unit": "milliseconds"}]}
EVENT = {"id": "s-1", "placed_ms": 1_764_064_800_000}


def children_config(tmp_path: Path, *children: dict[str, Any], **changes: Any) -> Path:
    return config(tmp_path, [{"name": "placed_at", "path": "placed_ms", "type": "timestamptz",
                              "time_unit": "milliseconds"}],
                  children=list(children or [LINES]), **changes)


def decode(path: Path, event: dict[str, Any]) -> Any:
    settings = load_settings(path)
    contracts = load_contracts(settings)
    found = Decoder(settings, contracts, load_chains(settings)).decode(
        "weir.shipments", 2, 40, 1_764_064_800_000, orjson.dumps(event))
    assert found is not None
    return found


def test_each_item_is_a_staged_row_with_the_parents_key_time_and_record(
        tmp_path: Path) -> None:
    found = decode(children_config(tmp_path), {**EVENT, "parts": [
        {"sku": "a", "qty": 2, "seen_ms": 1_764_064_800_123}, {"sku": "b"}]})
    assert len(found) == 3
    _, row, (lines,) = found
    # The parent's key (id, event_time: partitioned), its record, the position, the item.
    time = row[-6]
    assert lines == [("s-1", time, "weir.shipments", 2, 40, 0, "a", 2, time + 123_000),
                     ("s-1", time, "weir.shipments", 2, 40, 1, "b", 1, None)]


def test_an_absent_array_is_no_items_and_under_merge_keeps_the_stored_ones(
        tmp_path: Path) -> None:
    assert decode(children_config(tmp_path), EVENT)[2] == ([],)
    merged = children_config(
        tmp_path, write_mode="upsert", upsert_key=["id"], version_field="placed_ms",
        update_mode="merge", partitioning={"interval": "none"})
    _, row, (lines,) = decode(merged, {**EVENT, "parts": None})
    assert lines is None
    # Upsert: the key is the upsert key alone, event_time follows it.
    _, row, (lines,) = decode(merged, {**EVENT, "parts": [{"sku": "x"}]})
    assert lines == [("s-1", row[-6], "weir.shipments", 2, 40, 0, "x", 1, None)]


@pytest.mark.parametrize(("lines", "reason", "message"), [
    ({"sku": "a"}, "conversion_error",
     "child table shipment_lines: path 'parts': {'sku': 'a'} is not an array"),
    ([{}, {}, {}, {}], "too_many_items",
     "child table shipment_lines: path 'parts': 4 items, over max_items (3)"),
    ([{"sku": "a"}, {"sku": 5}], "conversion_error",
     "child table shipment_lines: path 'parts', item 1: path 'sku': 5 is an integer"),
    ([{"qty": 2**40}], "conversion_error", "item 0: path 'qty': 1099511627776 is out of range"),
    ([{"seen_ms": 10**17}], "conversion_error",
     "item 0: path 'seen_ms': 100000000000000000 milliseconds since 1970 is outside"),
    (["a"], "conversion_error", "item 0: path 'sku': the value itself is a string, not an"),
])
def test_a_bad_array_is_a_dead_letter_naming_the_item_and_path(
        tmp_path: Path, lines: Any, reason: str, message: str) -> None:
    with pytest.raises(EventRejected) as caught:
        decode(children_config(tmp_path), {**EVENT, "parts": lines})
    assert caught.value.reason == reason
    assert message in str(caught.value)


def test_scalar_items_take_the_path_dot(tmp_path: Path) -> None:
    tags = {"table": "shipment_tags", "path": "tags",
            "columns": [{"name": "tag", "path": ".", "type": "text"}]}
    _, _, (rows,) = decode(children_config(tmp_path, tags), {**EVENT, "tags": ["x", "y"]})
    assert [r[-2:] for r in rows] == [(0, "x"), (1, "y")]


@pytest.mark.parametrize(("child", "changes", "fragment"), [
    ({**LINES, "table": "orders"}, {}, "'orders' is used twice"),
    ({**LINES, "table": "weir_offsets"}, {}, "is Weir's own table"),
    ({**LINES, "columns": [{"name": "k", "source": "key", "type": "text"}]}, {},
     "a child table's columns come from its item"),
    ({**LINES, "max_items": 0}, {}, "max_items"),
    ({**LINES, "path": "lines..x"}, {}, "is not a key followed by"),
    ({**LINES, "rollups": [{"table": "lines_per_minute", "sums": ["qty"]}]},
     {"write_mode": "upsert", "upsert_key": ["id"], "version_field": "placed_ms",
      "partitioning": {"interval": "none"}}, "an upsert table replaces them"),
])
def test_the_config_refuses_a_child_table_that_cannot_work(
        tmp_path: Path, child: dict[str, Any], changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(children_config(tmp_path, child, **changes))
    assert fragment in str(caught.value)


@pytest.mark.parametrize(("child", "fragment"), [
    ({**LINES, "columns": [{"name": "event_time", "path": "t", "type": "text"}]},
     "columns ['event_time'] would appear twice"),
    ({**LINES, "index_column": "id"}, "columns ['id'] would appear twice"),
    ({**LINES, "rollups": [{"table": "lines_per_minute", "sums": ["sku"]}]},
     "'sku' is not a numeric column of the item"),
    ({**LINES, "indexes": [{"columns": ["nope"]}]}, "'nope' is not a column of the child"),
])
def test_the_contract_refuses_child_columns_that_collide_or_do_not_exist(
        tmp_path: Path, child: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ContractError) as caught:
        load_contracts(load_settings(children_config(tmp_path, child)))
    assert fragment in str(caught.value)


def test_the_child_table_is_partitioned_as_its_parent_and_made_with_it(tmp_path: Path) -> None:
    settings = load_settings(children_config(tmp_path, {
        **LINES, "indexes": [{"columns": ["sku"]}]}))
    contract = load_contracts(settings)["shipment"]
    spec = table_spec(contract, settings)
    ddl = "\n".join(target_ddl(contract, spec))
    assert '"id" text NOT NULL,\n  "event_time" timestamptz NOT NULL,\n  "item_index" ' \
           'integer NOT NULL,\n  "sku" text,\n  "qty" integer,\n  "seen_at" timestamptz' in ddl
    assert 'CONSTRAINT "shipment_lines_pkey" PRIMARY KEY ("id", "event_time", ' \
           '"item_index")\n) PARTITION BY RANGE (event_time)' in ddl
    assert '"shipment_lines_default" PARTITION OF' in ddl
    assert 'ON "weir_example"."shipment_lines" USING btree ("sku")' in ddl
    add = partition_function_ddl(spec)[0]
    retained = load_settings(children_config(tmp_path, partitioning={"retention_days": 30}))
    drop = partition_function_ddl(table_spec(load_contracts(retained)["shipment"], retained))[1]
    assert "ARRAY['shipments', 'shipment_lines']::text[]" in add
    assert "ARRAY['shipments_default', 'shipment_lines_default']::text[]" in drop


def test_check_event_shows_the_child_rows(tmp_path: Path) -> None:
    settings = load_settings(children_config(tmp_path))
    contracts = load_contracts(settings)
    verdict = asyncio.run(check_event(
        settings, contracts, load_chains(settings), "weir.shipments",
        orjson.dumps({**EVENT, "parts": [{"sku": "a", "qty": 2}]}), timestamp_ms=1))
    assert "child rows: shipment_lines (1)" in verdict.render()
    assert verdict.as_dict()["children"] == {"shipment_lines": [{
        "id": "s-1", "event_time": "2025-11-25T10:00:00+00:00", "item_index": 0, "sku": "a",
        "qty": 2, "seen_at": None}]}


def test_a_mapped_column_of_the_upsert_key_may_not_be_absent(tmp_path: Path) -> None:
    path = config(tmp_path, [{"name": "account", "source": "key", "type": "text"}],
                  write_mode="upsert", upsert_key=["account"], time_field=None,
                  partitioning={"interval": "none"})
    settings = load_settings(path)
    assert settings.event_types["shipment"].keyed_by_kafka_key  # no version_field needed
    contracts = load_contracts(settings)
    decoder = Decoder(settings, contracts, load_chains(settings))
    value = orjson.dumps(EVENT)
    _, row = decoder.decode("weir.shipments", 0, 1, 1_764_064_800_000, value, (), b"a-1")
    assert row[len(contracts["shipment"].columns) - 1] == "a-1"
    with pytest.raises(EventRejected, match="field 'account': part of the upsert key is "
                       "absent"):
        decoder.decode("weir.shipments", 0, 2, 1_764_064_800_000, value, (), None)
    # Its column is NOT NULL, as every part of a primary key.
    spec = table_spec(contracts["shipment"], settings)
    assert '"account" text NOT NULL' in target_ddl(contracts["shipment"], spec)[0]
