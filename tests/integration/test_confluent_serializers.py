"""Weir reads what Confluent's own serializers write.

Sample orders go through ``confluent-kafka``'s ``AvroSerializer`` (``schemas/order.avsc``),
``ProtobufSerializer`` (``schemas/order.proto`` compiled to a dynamic message class; the
serializer registers its base64 descriptor itself) and ``JSONSerializer``
(``schemas/order.v1.json``), each registering against the real registry under Confluent's
TopicNameStrategy (``<topic>-value``, Weir's default subject), and are produced to a
pipeline's topic of that format. After ``weir run --until-caught-up`` every event is one row
with the values the event holds, and there is no dead letter.

The ``__value_schema_id`` header: confluent-kafka's own ``header_schema_id_serializer`` writes
the schema's GUID (magic byte 1), which Apicurio does not give (serializing fails: "Schema
GUID is not set"). Records carrying a GUID header, as that serializer writes them against a
registry that has GUIDs, are ``unsupported_framing`` dead letters; the same header carrying
the integer id (magic byte 0, as Weir documents) lands.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    header_schema_id_serializer,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message_factory import GetMessageClass  # type: ignore[import-untyped]

from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import load_settings
from processor.registry.protobuf_schema import parse_proto
from tests.integration.conftest import KAFKA, REGISTRY, ROOT, Harness

EVENTS = 300
AVRO = fastavro.parse_schema(orjson.loads((ROOT / "schemas/order.avsc").read_bytes()))
Event = dict[str, Any]
# (value, headers) for one sample event, as a Confluent serializer wrote it.
Serialize = Callable[[Event, str], tuple[bytes, list[tuple[str, bytes]]]]


def framed(tmp_path: Path, fmt: str) -> Harness:
    """A migrated pipeline whose order topic is read in ``fmt``, subject left default."""
    h = Harness(tmp_path, partitions=4, schema_registry={"url": REGISTRY})
    config = yaml.safe_load(h.config.read_text())
    config["topics"] = [{"name": h.topics["order"], "event_type": "order", "format": fmt}]
    h.config.write_text(yaml.safe_dump(config))
    h.migrate()
    return h


def sample_orders(n: int, seed: int) -> list[tuple[str, Event]]:
    sample = SampleEvents(seed=seed, keys=40)
    return [sample.make("order") for _ in range(n)]


def avro_objects(event: Event, ctx: SerializationContext) -> Event:
    """``to_dict`` for AvroSerializer: Avro's logical types take Python objects."""
    record = dict(event)
    record["occurred_at"] = datetime.fromisoformat(event["occurred_at"])
    record["amount"] = Decimal(repr(event["amount"]))
    return record


def avro_serializer(client: SchemaRegistryClient, conf: dict[str, Any] | None = None
                    ) -> Serialize:
    return _with_context(AvroSerializer(
        client, (ROOT / "schemas/order.avsc").read_text(), avro_objects, conf))


def protobuf_serializer(client: SchemaRegistryClient) -> Serialize:
    message = GetMessageClass(parse_proto((ROOT / "schemas/order.proto").read_text())
                              .message([0]))
    serializer = ProtobufSerializer(message, client, {"use.deprecated.format": False})

    def serialize(event: Event, ctx: SerializationContext) -> bytes | None:
        # protobuf's JSON mapping: a Timestamp from RFC 3339, an enum by name, a wrapper
        # from its plain value (null: unset).
        built = json_format.ParseDict(event, message(), ignore_unknown_fields=True)
        return serializer(built, ctx)

    return _with_context(serialize)


def json_serializer(client: SchemaRegistryClient) -> Serialize:
    return _with_context(JSONSerializer((ROOT / "schemas/order.v1.json").read_text(), client))


def _with_context(serialize: Callable[[Event, SerializationContext], bytes | None]
                  ) -> Serialize:
    def go(event: Event, topic: str) -> tuple[bytes, list[tuple[str, bytes]]]:
        headers: list[tuple[str, bytes]] = []
        value = serialize(event, SerializationContext(topic, MessageField.VALUE, headers))
        assert value is not None
        return value, headers
    return go


SERIALIZERS: dict[str, Callable[[SchemaRegistryClient], Serialize]] = {
    "avro": avro_serializer, "protobuf": protobuf_serializer, "jsonschema": json_serializer,
}


def publish(h: Harness, records: list[tuple[str, bytes, list[tuple[str, bytes]]]]
            ) -> list[tuple[int, int]]:
    """Produce (key, value, headers) to ``h``'s order topic; their (partition, offset)."""
    settings = load_settings(h.config)

    async def go() -> list[tuple[int, int]]:
        await ensure_topics(settings, 4)
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all",
                                    enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(h.topics["order"], value, key=key.encode(),
                                           headers=headers or None)
                       for key, value, headers in records]
            metas = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return [(m.partition, m.offset) for m in metas]

    return asyncio.run(go())


def run_until_caught_up(h: Harness, records: int) -> None:
    """One ``weir run --until-caught-up``: every record a row or a dead letter when it stops.

    (A first run on a fresh group once stopped "caught up" having consumed nothing: the
    records fetched while its assignment was handled were dropped. Fixed; see
    ``test_assignment_race.py``.)
    """
    proc = h.start("run", "--until-caught-up")
    assert proc.wait(300) == 0, h.why_exited(proc)
    assert h.scalar("SELECT (SELECT count(*) FROM orders) + "
                    "(SELECT count(*) FROM weir_dead_letters)") == records, h.why_exited(proc)


def expected_row(event: Event) -> dict[str, Any]:
    """The row an event makes: its values, the currency upper-cased by the harness's
    transform (``normalize_currency``)."""
    return {
        "event_id": event["event_id"], "customer_id": event["customer_id"],
        "seq": event["seq"], "occurred_at": datetime.fromisoformat(event["occurred_at"]),
        "order_id": event["order_id"], "status": event["status"],
        "amount": Decimal(repr(event["amount"])), "currency": event["currency"].upper(),
        "items": event["items"], "channel": event.get("channel"),
        "event_time": datetime.fromisoformat(event["occurred_at"]),
    }


def stored_rows(h: Harness) -> dict[str, dict[str, Any]]:
    found = h.sql("SELECT event_id::text, customer_id, seq, occurred_at, order_id, status, "
                  "amount, currency, items::text AS items, channel, event_time, "
                  "kafka_partition, kafka_offset FROM orders")
    return {r["event_id"]: {**dict(r), "items": orjson.loads(r["items"])} for r in found}


def dead_letters(h: Harness) -> list[tuple[int, int, str, str]]:
    return [(r[0], r[1], r[2], r[3]) for r in h.sql(
        'SELECT partition, "offset", reason, error FROM weir_dead_letters ORDER BY id')]


def check_landed(h: Harness, events: list[tuple[str, Event]],
                 sent: list[tuple[int, int]]) -> None:
    """Every event is one row at its coordinates, with every column its value."""
    rows = stored_rows(h)
    assert len(rows) == len(events)
    for (_, event), (partition, offset) in zip(events, sent, strict=True):
        row = rows[event["event_id"]]
        got = {k: row[k] for k in expected_row(event)}
        assert got == expected_row(event), (event, row)
        assert (row["kafka_partition"], row["kafka_offset"]) == (partition, offset)
    assert all(isinstance(r["amount"], Decimal) for r in rows.values())


@pytest.fixture
def registry() -> Iterator[SchemaRegistryClient]:
    """Confluent's registry client, closed afterwards (its HTTP connections too)."""
    with SchemaRegistryClient({"url": REGISTRY}) as client:
        yield client


@pytest.fixture
def pipelines(tmp_path: Path) -> Iterator[Callable[[str], Harness]]:
    made: list[Harness] = []

    def make(fmt: str) -> Harness:
        h = framed(tmp_path / f"{fmt}-{len(made)}", fmt)
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            h.cleanup()


@pytest.mark.parametrize("fmt", sorted(SERIALIZERS))
def test_what_a_confluent_serializer_writes_lands(
        pipelines: Callable[[str], Harness], registry: SchemaRegistryClient, fmt: str) -> None:
    h = pipelines(fmt)
    events = sample_orders(EVENTS, seed={"avro": 1, "protobuf": 2, "jsonschema": 3}[fmt])
    serialize = SERIALIZERS[fmt](registry)
    records = []
    for key, event in events:
        value, headers = serialize(event, h.topics["order"])
        assert value[0] == 0  # the id in the value's prefix
        assert not headers
        records.append((key, value, headers))
    sent = publish(h, records)

    run_until_caught_up(h, len(records))

    assert dead_letters(h) == []
    check_landed(h, events, sent)
    # The serializer registered under Confluent's TopicNameStrategy subject, Weir's default.
    subject = f"{h.topics['order']}-value"
    assert registry.get_latest_version(subject).schema.schema_type == {
        "avro": "AVRO", "protobuf": "PROTOBUF", "jsonschema": "JSON"}[fmt]


def _id_in_header(payload: bytes, ctx: SerializationContext | None, schema_id: Any) -> bytes:
    """A ``schema.id.serializer`` writing the integer id (magic byte 0) to the header."""
    assert ctx is not None
    assert isinstance(ctx.headers, list)
    ctx.headers.append(("__value_schema_id", schema_id.id_to_bytes()))
    return payload


def _guid_in_header(payload: bytes, ctx: SerializationContext | None, schema_id: Any) -> bytes:
    """confluent-kafka's ``header_schema_id_serializer`` as it writes against a registry that
    gives schemas GUIDs (Confluent Platform 8): Apicurio gives none, so one is made here."""
    schema_id.guid = uuid.uuid5(uuid.NAMESPACE_URL, f"schema-{schema_id.id}")
    return header_schema_id_serializer(payload, ctx, schema_id)


def test_the_builtin_header_serializer_writes_a_guid_that_apicurio_lacks(
        registry: SchemaRegistryClient) -> None:
    serialize = avro_serializer(registry, {"schema.id.serializer": header_schema_id_serializer})
    _, event = sample_orders(1, seed=5)[0]
    with pytest.raises(SerializationError, match="GUID"):
        serialize(event, f"it.{uuid.uuid4().hex[:8]}.orders")


def test_the_schema_id_in_the_header(pipelines: Callable[[str], Harness],
                                     registry: SchemaRegistryClient) -> None:
    h = pipelines("avro")
    events = sample_orders(EVENTS, seed=23)
    by_id = avro_serializer(registry, {"schema.id.serializer": _id_in_header})
    by_guid = avro_serializer(registry, {"schema.id.serializer": _guid_in_header})
    records, landing, guided = [], [], []
    for i, (key, event) in enumerate(events):
        guid = i % 5 == 4
        value, headers = (by_guid if guid else by_id)(event, h.topics["order"])
        [(name, header)] = headers
        assert name == "__value_schema_id"
        assert header[0] == (1 if guid else 0)
        assert len(header) == (17 if guid else 5)
        # The value is the bare Avro payload, no prefix.
        assert str(fastavro.schemaless_reader(io.BytesIO(value), AVRO)["event_id"]) == (
            event["event_id"])
        records.append((key, value, headers))
        (guided if guid else landing).append((i, key, event))
    sent = publish(h, records)

    run_until_caught_up(h, len(records))

    check_landed(h, [(k, e) for _, k, e in landing], [sent[i] for i, _, _ in landing])
    letters = dead_letters(h)
    assert sorted((p, o) for p, o, _, _ in letters) == sorted(sent[i] for i, _, _ in guided)
    assert {reason for _, _, reason, _ in letters} == {"unsupported_framing"}
    assert all("magic byte 1" in error for _, _, _, error in letters)
