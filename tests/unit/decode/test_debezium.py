"""Debezium's change envelope: the config's checks and what the decoder makes of each op."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from processor.commands.check_event import check_event
from processor.contracts import ContractError, load_contracts
from processor.core.errors import ConfigError, EventRejected
from processor.core.pgtime import kafka_micros
from processor.core.records import DELETE, TRUNCATE
from processor.core.row_layout import META_NAMES, event_time_of, position_of
from processor.core.settings import load_settings
from processor.decode.debezium import ColumnsPending, DebeziumEnvelope
from processor.decode.decoder import Decoder
from processor.transform.loader import load_chains
from tests.unit.decode.test_mapped import config

SCHEMA = {"type": "object", "required": ["id"],
          "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
TOPIC = "weir.shipments"
KAFKA_MS = 1_764_064_800_000


def debezium_config(tmp_path: Path, **changes: Any) -> Path:
    path = config(tmp_path, [], **{
        "envelope": "debezium", "write_mode": "upsert", "upsert_key": ["id"],
        "key_field": "id", "time_field": None, "partitioning": {"interval": "none"},
        **changes})
    (tmp_path / "shipment.json").write_text(orjson.dumps(SCHEMA).decode())
    return path


def decoder(path: Path) -> Decoder:
    settings = load_settings(path)
    return Decoder(settings, load_contracts(settings), load_chains(settings))


def decode(path: Path, event: Any) -> Any:
    return decoder(path).decode(TOPIC, 1, 9, KAFKA_MS, orjson.dumps(event), (), b'{"id":7}')


SOURCE_MS = 1_764_000_000_000  # the change's commit time at the source


def envelope(op: str, before: Any = None, after: Any = None, schema: bool = False,
             source: Any = None) -> Any:
    payload = {"op": op, "before": before, "after": after,
               "source": {"lsn": 1, "ts_ms": SOURCE_MS} if source is None else source}
    return {"schema": {"type": "struct"}, "payload": payload} if schema else payload


@pytest.mark.parametrize("op", ["c", "r", "u"])
@pytest.mark.parametrize("schema", [False, True])
def test_a_create_read_or_update_is_its_after_row(tmp_path: Path, op: str,
                                                  schema: bool) -> None:
    event_type, row = decode(debezium_config(tmp_path),
                             envelope(op, None, {"id": 7, "name": "a"}, schema))
    assert event_type == "shipment"
    assert row[:3] == (7, "a", 1)  # its columns, then its source position
    assert row[3] == kafka_micros(SOURCE_MS)  # event_time: the commit at the source
    assert row[-2] == kafka_micros(KAFKA_MS)
    assert orjson.loads(row[-1]) == {"id": 7, "name": "a"}  # raw: the row, not the envelope


@pytest.mark.parametrize(("source", "position"), [
    ({"lsn": 33_816_000, "ts_ms": SOURCE_MS}, 33_816_000),  # PostgreSQL
    ({"file": "mysql-bin.000003", "pos": 154, "row": 0, "ts_ms": SOURCE_MS},
     (3 << 32) | 154),  # MySQL: the binlog file's number, then the position in it
    ({"ts_ms": SOURCE_MS}, SOURCE_MS),  # any other: the commit time
])
def test_a_change_is_ordered_by_its_place_in_the_source_log(tmp_path: Path, source: Any,
                                                            position: int) -> None:
    _, row = decode(debezium_config(tmp_path), envelope("u", None, {"id": 7}, source=source))
    assert row[2] == position == position_of(row)


@pytest.mark.parametrize(("source", "message"), [
    (None, "'source' is None, not an object"),
    ({"lsn": -1}, "'source.lsn' is -1, not a position"),
    ({"lsn": "0/16B3748"}, "'source.lsn' is '0/16B3748', not a position"),
    ({"file": "binlog", "pos": 4}, "the binlog position is None"),
    ({"db": "src"}, "'source.ts_ms' (it has no lsn, nor binlog file and pos) is None"),
])
def test_a_change_without_a_source_position_is_a_dead_letter(tmp_path: Path, source: Any,
                                                             message: str) -> None:
    event = envelope("u", None, {"id": 7})
    event["source"] = source
    with pytest.raises(EventRejected) as caught:
        decode(debezium_config(tmp_path), event)
    assert caught.value.reason == "envelope_error"
    assert message in str(caught.value)


def test_a_delete_is_its_keys_row_to_delete(tmp_path: Path) -> None:
    event_type, row, mark = decode(debezium_config(tmp_path),
                                   envelope("d", {"id": 7, "name": None}, None, True))
    assert (event_type, mark) == ("shipment", DELETE)
    assert row[:2] == (7, 1)  # its key, its source position
    assert event_time_of(row) == kafka_micros(SOURCE_MS)
    assert row[-1] is None  # no raw: as a tombstone's
    # Its tombstone changes nothing.
    d = decoder(debezium_config(tmp_path))
    assert d.tombstone(TOPIC, 1, 10, KAFKA_MS, b'{"id":7}') is None


@pytest.mark.parametrize("truncates", ["truncate", "stall"])
def test_a_truncate_is_its_source_position(tmp_path: Path, truncates: str) -> None:
    event_type, row, mark = decode(debezium_config(tmp_path, truncates=truncates),
                                   envelope("t", source={"lsn": 90, "ts_ms": SOURCE_MS}))
    assert (event_type, mark, row[0], len(row)) == ("shipment", TRUNCATE, 90, 7)
    # ignored, or a logical decoding message: nothing
    assert decode(debezium_config(tmp_path, truncates="ignore"), envelope("t")) is None
    assert decode(debezium_config(tmp_path), envelope("m")) is None


@pytest.mark.parametrize(("event", "message"), [
    ({"payload": [1]}, "its payload is [1], not an object"),
    (envelope("c", None, None), "op 'c' with 'after' None, not an object"),
    (envelope("d", None, None), "op 'd' with 'before' None, not an object"),
    (envelope("d", {"name": "a"}, None), "op 'd' with no 'id' in 'before'"),
    (envelope("d", {"id": "seven"}, None), "op 'd', 'before' field 'id': 'seven' is"),
    ({"op": "x"}, "'op' is 'x', not one of c, r, u, d, t, m"),
    ({"id": 7, "name": "a"}, "'op' is None"),  # a plain event on a Debezium topic
])
def test_what_is_not_a_change_event_is_a_dead_letter(tmp_path: Path, event: Any,
                                                     message: str) -> None:
    with pytest.raises(EventRejected) as caught:
        decode(debezium_config(tmp_path), event)
    assert caught.value.reason == "envelope_error"
    assert message in str(caught.value)


def test_the_after_row_is_checked_against_the_contract(tmp_path: Path) -> None:
    with pytest.raises(EventRejected) as caught:
        decode(debezium_config(tmp_path), envelope("u", None, {"id": "x"}))
    assert caught.value.reason == "schema_violation"


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"write_mode": "insert", "upsert_key": [], "key_field": None},
     "envelope debezium mirrors a table"),
    ({"key_field": "name", "version_field": "id"}, "envelope debezium mirrors a table"),
    ({"tombstones": "delete"}, "envelope debezium ignores tombstones"),
    ({"time_field": "id"}, "envelope debezium: no time_field"),
    ({"envelope": "none", "deletes": "soft"}, "deletes: only for envelope debezium"),
    ({"envelope": "none", "truncates": "ignore"}, "truncates: only for envelope debezium"),
])
def test_the_config_refuses_a_mirror_that_cannot_work(tmp_path: Path, changes: Any,
                                                      fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(debezium_config(tmp_path, **changes))
    assert fragment in str(caught.value)


def test_a_mirror_refuses_a_column_named_as_weirs_own(tmp_path: Path) -> None:
    path = debezium_config(tmp_path, deletes="soft")
    (tmp_path / "shipment.json").write_text(orjson.dumps(
        {**SCHEMA, "properties": {**SCHEMA["properties"], "deleted_at": {"type": "string"}}}
    ).decode())
    with pytest.raises(ContractError, match="'deleted_at' is a column Weir adds to a mirror"):
        load_contracts(load_settings(path))


def test_check_event_shows_a_delete_as_its_key(tmp_path: Path) -> None:
    settings = load_settings(debezium_config(tmp_path, deletes="soft"))
    verdict = asyncio.run(check_event(
        settings, load_contracts(settings), load_chains(settings), TOPIC,
        orjson.dumps(envelope("d", {"id": 7}, None)), timestamp_ms=KAFKA_MS))
    assert verdict.as_dict()["columns"]["id"] == 7
    assert verdict.as_dict()["columns"]["source_position"] == 1
    assert verdict.as_dict()["columns"]["raw"] is None
    truncate = asyncio.run(check_event(
        settings, load_contracts(settings), load_chains(settings), TOPIC,
        orjson.dumps(envelope("t")), timestamp_ms=KAFKA_MS))
    assert set(truncate.as_dict()["columns"]) == {"source_position", *META_NAMES}


def test_a_debezium_topic_is_json_and_names_its_event_type(tmp_path: Path) -> None:
    path = debezium_config(tmp_path)
    settings = yaml.safe_load(path.read_text())
    settings["topics"] = [t | ({"format": "avro"} if t["name"] == TOPIC else {})
                          for t in settings["topics"]]
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError, match="carries Debezium change events"):
        load_settings(path)


def test_an_evolving_mirror_holds_a_change_with_a_field_it_has_not(tmp_path: Path) -> None:
    """A mirror of cdc.mirrors: a change whose schema has a field the contract lacks raises
    ColumnsPending with that field's Connect schema (never written without it); a mirror
    by hand writes it, the field in raw only."""
    settings = load_settings(debezium_config(tmp_path))
    contracts = load_contracts(settings)
    tier = {"field": "tier", "type": "string", "optional": True}
    event = {"schema": {"type": "struct", "fields": [
        {"field": "after", "type": "struct", "fields": [
            {"field": "id", "type": "int32"}, {"field": "name", "type": "string"}, tier]}]},
        "payload": envelope("c", after={"id": 7, "name": "a", "tier": "gold"})}
    evolving = Decoder(settings, contracts, load_chains(settings), evolving=frozenset(
        {"shipment"}))
    with pytest.raises(ColumnsPending) as held:
        evolving.decode(TOPIC, 1, 9, KAFKA_MS, orjson.dumps(event), (), b'{"id":7}')
    assert (held.value.event_type, held.value.fields) == ("shipment", {"tier": tier})
    # Without the new field it is written as any change.
    known = {**event, "payload": envelope("c", after={"id": 7, "name": "a"})}
    assert evolving.decode(TOPIC, 1, 9, KAFKA_MS, orjson.dumps(known), (), b'{"id":7}')
    assert decode(debezium_config(tmp_path), event) is not None


def test_an_evolving_mirror_holds_an_avro_writer_with_a_field_it_has_not(
        tmp_path: Path) -> None:
    """Avro: a writer schema whose after record has a field the contract lacks holds its
    changes (they would resolve to the reader without it); a mirror by hand reads them."""
    settings = load_settings(debezium_config(tmp_path))
    contract = load_contracts(settings)["shipment"]
    row = {"type": "record", "name": "Value", "fields": [
        {"name": "id", "type": "int"}, {"name": "name", "type": "string"},
        {"name": "tier", "type": ["null", "string"], "default": None}]}
    writer = {"type": "record", "name": "Envelope", "fields": [
        {"name": "before", "type": ["null", row], "default": None},
        {"name": "after", "type": ["null", "Value"], "default": None},
        {"name": "op", "type": "string"}]}
    evolving = DebeziumEnvelope(contract, settings.event_types["shipment"], evolving=True)
    with pytest.raises(ColumnsPending) as held:
        evolving.vet_writer(writer)
    assert (held.value.event_type, list(held.value.fields)) == ("shipment", ["tier"])
    assert held.value.fields["tier"]["optional"] is True
    row["fields"] = row["fields"][:2]
    evolving.vet_writer(writer)  # no new field: read as any
    by_hand = DebeziumEnvelope(contract, settings.event_types["shipment"])
    row["fields"].append({"name": "tier", "type": "string"})
    by_hand.vet_writer(writer)
