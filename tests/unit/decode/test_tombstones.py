"""Tombstones: the key mapping of the producers' contract, and the last event per key."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.contracts import load_contracts
from processor.core.errors import EventRejected
from processor.core.keys import canonical_key
from processor.core.settings import Settings, load_settings
from processor.decode.tombstones import TombstoneKey
from processor.schema.tables import TableSpec
from processor.sink.tombstones import last_per_key


def upsert_settings(example_config: Path, key: list[str]) -> Settings:
    base = load_settings(example_config)
    order = base.event_types["order"].model_copy(update={
        "write_mode": "upsert", "upsert_key": key, "key_field": key[0],
        "partitioning": base.event_types["order"].partitioning.model_copy(
            update={"interval": "none"}), "rollups": []})
    return base.model_copy(update={"event_types": {**base.event_types, "order": order}})


def mapping(example_config: Path, key: list[str]) -> TombstoneKey:
    settings = upsert_settings(example_config, key)
    contracts = load_contracts(settings)
    return TombstoneKey(contracts["order"], settings.event_types["order"])


def test_one_key_column_is_the_kafka_key_as_text(example_config: Path) -> None:
    keys = mapping(example_config, ["order_id"])
    assert keys.mode == "delete"
    assert keys.key_values(b"o-00042") == ("o-00042",)


def test_a_number_column_takes_the_key_as_a_json_number(example_config: Path) -> None:
    keys = mapping(example_config, ["seq"])
    assert keys.key_values(b"42") == (42,)
    with pytest.raises(EventRejected, match="field 'seq'") as refused:
        keys.key_values(b"forty-two")
    assert refused.value.reason == "tombstone_key"


def test_several_columns_take_a_json_object_of_exactly_those(example_config: Path) -> None:
    keys = mapping(example_config, ["order_id", "seq"])
    assert keys.key_values(b'{"order_id":"o-1","seq":3}') == ("o-1", 3)
    for bad in (b'{"order_id": "o-1"}', b'["o-1", 3]', b'{"order_id": "o-1", "seq": 3, "x": 1}'):
        with pytest.raises(EventRejected, match="exactly the fields"):
            keys.key_values(bad)


def test_a_key_in_another_notation_is_refused_with_the_canonical_form(
        example_config: Path) -> None:
    # Kafka partitions by the key's bytes: another notation of the same key would land on
    # another partition, unordered with the key's updates.
    keys = mapping(example_config, ["order_id", "seq"])
    for other in (b'{"seq":3,"order_id":"o-1"}', b'{"order_id": "o-1", "seq": 3}',
                  b'{"order_id":"o-1","seq":3.0}', rb'{"order_id":"o\u002d1","seq":3}',
                  b'{"order_id":"o-1","order_id":"o-1","seq":3}'):
        with pytest.raises(EventRejected, match="canonical form") as refused:
            keys.key_values(other)
        assert refused.value.reason == "tombstone_key"
        assert '{"order_id":"o-1","seq":3}' in str(refused.value)
    number = mapping(example_config, ["seq"])
    for other in (b" 42", b"4.2e1", b"42.0"):
        with pytest.raises(EventRejected, match="canonical form"):
            number.key_values(other)


def test_canonical_key_is_what_producers_key_events_with() -> None:
    event = {"seq": 3, "order_id": "o-1", "customer_id": "c-1"}
    assert canonical_key(event, ["order_id", "seq"]) == b'{"order_id":"o-1","seq":3}'
    assert canonical_key(event, ["seq", "order_id"]) == b'{"seq":3,"order_id":"o-1"}'
    assert canonical_key(event, ["order_id"]) == b"o-1"
    assert canonical_key(event, ["seq"]) == b"3"


def test_a_key_value_no_event_could_carry_is_refused(example_config: Path) -> None:
    # The contract's own checks of the key's properties: order_id is 1 to 64 characters.
    keys = mapping(example_config, ["order_id"])
    for bad in (b"o" * 70_000, b""):
        with pytest.raises(EventRejected, match="no event of this type could carry it"):
            keys.key_values(bad)
    pair = mapping(example_config, ["order_id", "seq"])
    for bad in (b'{"order_id":"o-1","seq":0}', b'{"order_id":"o-1","seq":"3"}'):
        with pytest.raises(EventRejected, match="could carry it"):
            pair.key_values(bad)


def test_a_key_that_cannot_be_a_key_is_refused_with_why(example_config: Path) -> None:
    keys = mapping(example_config, ["order_id"])
    with pytest.raises(EventRejected, match="not UTF-8"):
        keys.key_values(b"\xff")
    with pytest.raises(EventRejected, match="no key"):
        keys.key_values(None)
    with pytest.raises(EventRejected, match="NUL"):
        keys.key_values(b"o\x00")


SPEC = TableSpec("order", "public", "orders", ("order_id", "seq", "event_time", "kafka_topic",
                                               "kafka_partition", "kafka_offset",
                                               "kafka_timestamp", "raw"),
                 ("order_id",), upsert=True, key_types=("text",))


def row(key: str, offset: int) -> tuple[object, ...]:
    return (key, 1, 0, "t", 0, offset, 0, b"{}")


def stone(key: str, offset: int) -> tuple[object, ...]:
    return (key, 0, "t", 0, offset, 0, None)


def test_the_last_event_of_a_key_in_a_batch_decides() -> None:
    rows = [row("a", 1), row("b", 2), row("a", 5), row("c", 6)]
    stones = [stone("a", 3), stone("b", 4), stone("c", 7), stone("c", 8)]
    kept, args = last_per_key(SPEC, rows, stones)
    assert kept == [row("a", 1), row("a", 5)]  # a: updated after its tombstone
    assert args == [["b", "c"], [0, 0], [4, 8]]  # b and c end deleted, by their last one


def test_the_delete_keeps_a_newer_row() -> None:
    sql = SPEC.delete_sql()
    assert "unnest($1::text[], $2::int[], $3::bigint[])" in sql
    assert "t.kafka_offset < d.o" in sql
