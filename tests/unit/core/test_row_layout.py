"""The row's layout has one owner: every builder's rows read back by name through it.

Each way a row is built (the generated builder of the usual event, the generic builder
that decides everything else, a tombstone) is read back through the accessors the sink
uses (:mod:`processor.core.row_layout`, the lane's dead letter, the tombstone merge, the
partition guard's event time), and against the table's own column names.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from processor.commands.produce.encode import _avro
from processor.contracts import load_contracts
from processor.core import row_layout
from processor.core.pgtime import kafka_micros
from processor.core.records import Chunk, Row
from processor.core.settings import Settings, load_settings
from processor.decode.decoder import Decoder
from processor.registry.client import RegisteredSchema
from processor.registry.parse import parse_registered
from processor.registry.schemas import SchemaBook
from processor.schema.tables import table_spec
from processor.sink.lane import rejected
from processor.sink.tombstones import last_per_key
from processor.transform.loader import load_chains

ROOT = Path(__file__).resolve().parents[3]
TOPIC, PARTITION, OFFSET, TIMESTAMP_MS = "weir.orders", 5, 987_654_321, 1_764_064_800_000


def _upsert(example_config: Path) -> Settings:
    base = load_settings(example_config)
    order = base.event_types["order"].model_copy(update={
        "write_mode": "upsert", "upsert_key": ["order_id"], "key_field": "order_id",
        "partitioning": base.event_types["order"].partitioning.model_copy(
            update={"interval": "none"}), "rollups": []})
    return base.model_copy(update={"event_types": {**base.event_types, "order": order}})


def _decoder(settings: Settings) -> Decoder:
    return Decoder(settings, load_contracts(settings), load_chains(settings))


def _event() -> bytes:
    return orjson.dumps({
        "event_id": str(uuid.uuid4()), "customer_id": "c-1", "seq": 1, "order_id": "o-1",
        "occurred_at": "2026-11-25T10:00:00+00:00", "status": "paid", "amount": 1.5,
        "currency": "EUR", "items": [{"sku": "a", "qty": 1, "price": 1.5}]})


def _built(settings: Settings, how: str) -> tuple[str, tuple[Any, ...], bytes | None]:
    decoder = _decoder(settings)
    if how == "tombstone":
        built = decoder.tombstone(TOPIC, PARTITION, OFFSET, TIMESTAMP_MS, b"o-1")
        assert built is not None
        return built[0], built[1], None
    value = _event()
    if how == "avro":
        return _framed(settings, value)
    if how == "generated":
        built = decoder.decode(TOPIC, PARTITION, OFFSET, TIMESTAMP_MS, value)
        assert built is not None
        return built[0], built[1], value
    # The generic builder, which decides every event the generated one leaves to it.
    plan = decoder._plans["order"]
    event = orjson.loads(value)
    return "order", decoder._row(plan, event, TOPIC, PARTITION, OFFSET,
                                 TIMESTAMP_MS, value), value


def _framed(settings: Settings, value: bytes) -> tuple[str, tuple[Any, ...], bytes | None]:
    """The same event through the Avro path (its schema from a stand-in registry)."""
    schema = orjson.loads((ROOT / "schemas/order.avsc").read_bytes())

    class Client:
        def schema(self, schema_id: int) -> RegisteredSchema:
            return RegisteredSchema(schema_id, "AVRO", orjson.dumps(schema).decode())

        def subjects_of(self, schema_id: int) -> list[str]:
            return [f"{TOPIC}-value"]

        def resolve(self, registered: RegisteredSchema) -> RegisteredSchema:
            return registered  # no references here

    topics = [t.model_copy(update={"format": "avro"}) if t.name == TOPIC else t
              for t in settings.topics]
    framed = settings.model_copy(update={"topics": topics})
    book = SchemaBook(Client(), 4, parse_registered)  # type: ignore[arg-type]
    asyncio.run(book.ensure([3], None))
    decoder = Decoder(framed, load_contracts(framed), load_chains(framed), book)
    framed_value = _avro(3, fastavro.parse_schema(schema))(orjson.loads(value))
    built = decoder.decode_framed(TOPIC, PARTITION, OFFSET, TIMESTAMP_MS, framed_value, [])
    assert built is not None
    raw = row_layout.raw_of(built[1])
    assert raw is not None
    assert orjson.loads(raw)["order_id"] == "o-1"  # raw: the decoded event as JSON
    return built[0], built[1], raw


@pytest.mark.parametrize("how", ["generated", "generic", "tombstone", "avro"])
def test_every_builder_s_row_reads_back_by_name(example_config: Path, how: str) -> None:
    settings = _upsert(example_config) if how == "tombstone" else load_settings(example_config)
    event_type, values, value = _built(settings, how)
    spec = table_spec(load_contracts(settings)[event_type], settings)
    own = spec.key if how == "tombstone" else spec.columns[:-len(row_layout.META)]
    named = dict(zip((*own, *row_layout.META_NAMES), values, strict=True))
    kafka_ts = kafka_micros(TIMESTAMP_MS)
    assert (named["kafka_topic"], named["kafka_partition"], named["kafka_offset"]) == (
        TOPIC, PARTITION, OFFSET)
    assert named["kafka_timestamp"] == kafka_ts
    assert named["raw"] == value
    # The sink's accessors read the same fields.
    assert row_layout.topic_of(values) == TOPIC
    assert row_layout.partition_of(values) == PARTITION
    assert row_layout.offset_of(values) == OFFSET
    assert row_layout.raw_of(values) == value
    assert row_layout.event_time_of(values) == named["event_time"]
    if how != "tombstone":
        assert spec.columns == (*own, *row_layout.META_NAMES)
        assert values[spec.time_index] == named["event_time"] == named["occurred_at"]
    # The lane's dead letter for a row the table refused.
    chunk = Chunk((TOPIC, PARTITION), OFFSET, OFFSET + 1)
    row = Row(event_type, values, chunk, 10, b"o-1", [], TIMESTAMP_MS, how == "tombstone",
              value)
    dead = rejected(row, ValueError("refused"))
    assert (dead.topic, dead.partition, dead.offset, dead.value) == (
        TOPIC, PARTITION, OFFSET, value)


def test_the_tombstone_merge_reads_partition_and_offset_by_name(example_config: Path) -> None:
    settings = _upsert(example_config)
    spec = table_spec(load_contracts(settings)["order"], settings)
    _, update, _ = _built(load_settings(example_config), "generated")
    _, stone, _ = _built(settings, "tombstone")
    kept, args = last_per_key(spec, [update], [stone])
    # The update came at the same offset: the tombstone is not later, so the row stays.
    assert kept == [update]
    assert args == [[], [], []]
    later = (*stone[:row_layout.OFFSET], OFFSET + 1, *stone[row_layout.OFFSET + 1:])
    kept, args = last_per_key(spec, [update], [later])
    assert kept == []
    assert args == [["o-1"], [PARTITION], [OFFSET + 1]]


def test_a_builder_that_misses_a_metadata_column_fails_at_start() -> None:
    given = {name: name for name in row_layout.META_NAMES[:-1]}
    with pytest.raises(TypeError, match="missing \\['raw'\\]"):
        row_layout.tail_source(given)
    with pytest.raises(TypeError, match="exactly"):
        row_layout.tail(**given)
    assert row_layout.tail(**{n: n for n in row_layout.META_NAMES}) == row_layout.META_NAMES


def test_positions_are_derived_from_the_one_declaration() -> None:
    width = len(row_layout.META)
    row = tuple(range(10)) + row_layout.META_NAMES
    for name in row_layout.META_NAMES:
        assert row[row_layout.POSITION[name]] == name
    assert row_layout.columns(["a", "b"]) == ("a", "b", *row_layout.META_NAMES)
    assert sorted(row_layout.POSITION.values()) == list(range(-width, 0))
