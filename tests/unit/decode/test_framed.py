"""Framed values, per schema id: pending, refused for good, or read (a fake registry client:
the logic here is Weir's own; tests/integration holds it to the real registry)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import fastavro
import orjson
import pytest

from processor.commands.produce.encode import frame
from processor.core.errors import EventRejected
from processor.core.settings import TopicSettings
from processor.decode.framed import FramedTopic, SchemaPending
from processor.registry.client import RegisteredSchema, SchemaNotFound
from processor.registry.parse import parse_registered
from processor.registry.schemas import SchemaBook

V1 = {"type": "record", "name": "Order", "fields": [
    {"name": "order_id", "type": "string"}, {"name": "amount", "type": "double"}]}
# seq is new and has no default: data written without it cannot be read as V2.
V2 = {**V1, "fields": [*V1["fields"], {"name": "seq", "type": "long"}]}
TOPIC = TopicSettings(name="orders", event_type="order", format="avro")


class Client:
    """Schemas by id, as a registry answers them; counts the requests."""

    def __init__(self, schemas: dict[int, tuple[str, dict[str, Any]]]) -> None:
        self.schemas = schemas
        self.requests = 0

    def schema(self, schema_id: int) -> RegisteredSchema:
        self.requests += 1
        if schema_id not in self.schemas:
            raise SchemaNotFound(f"no schema {schema_id}")
        return RegisteredSchema(schema_id, "AVRO", orjson.dumps(self.schemas[schema_id][1])
                                .decode())

    def subjects_of(self, schema_id: int) -> list[str]:
        return [self.schemas[schema_id][0]]

    def resolve(self, schema: RegisteredSchema) -> RegisteredSchema:
        return schema  # no references here


def avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def topic(client: Client, reader: Any = None) -> tuple[FramedTopic, SchemaBook]:
    book = SchemaBook(client, 10, parse_registered)  # type: ignore[arg-type]
    return FramedTopic(TOPIC, book, reader), book


def test_an_unseen_id_is_pending_until_fetched_then_read() -> None:
    client = Client({1: ("orders-value", V1)})
    framed, book = topic(client)
    value = frame(1, avro(V1, {"order_id": "o-1", "amount": 2.5}))
    with pytest.raises(SchemaPending) as pending:
        framed.event(value, [])
    asyncio.run(book.ensure([pending.value.schema_id], None))
    event, _ = framed.event(value, [])
    assert event == {"order_id": "o-1", "amount": 2.5}
    framed.event(value, [])
    assert client.requests == 1  # fetched once, kept


def test_a_writer_the_contract_cannot_read_is_refused_once_and_for_good() -> None:
    client = Client({1: ("orders-value", V1)})
    framed, book = topic(client, reader=V2)
    asyncio.run(book.ensure([1], None))
    value = frame(1, avro(V1, {"order_id": "o-1", "amount": 2.5}))
    for _ in range(3):
        with pytest.raises(EventRejected) as refused:
            framed.event(value, [])
        assert refused.value.reason == "schema_mismatch"
        assert "'seq'" in str(refused.value)


def test_a_compatible_writer_resolves_to_the_contract() -> None:
    client = Client({2: ("orders-value", V2)})
    framed, book = topic(client, reader={**V1, "fields": [
        *V1["fields"], {"name": "coupon", "type": ["null", "string"], "default": None}]})
    asyncio.run(book.ensure([2], None))
    event, _ = framed.event(frame(2, avro(V2, {"order_id": "o", "amount": 1.0, "seq": 4})), [])
    # The writer's extra field stays (raw keeps it); the reader's new one takes its default.
    assert event == {"order_id": "o", "amount": 1.0, "seq": 4, "coupon": None}


@pytest.mark.parametrize(("schemas", "schema_id", "reason"), [
    ({}, 5, "unknown_schema_id"),
    ({5: ("payments-value", V1)}, 5, "wrong_subject"),
])
def test_what_the_registry_says_of_an_id(schemas: dict[int, Any], schema_id: int,
                                         reason: str) -> None:
    framed, book = topic(Client(schemas))
    asyncio.run(book.ensure([schema_id], None))
    with pytest.raises(EventRejected) as refused:
        framed.event(frame(schema_id, b"\x00"), [])
    assert refused.value.reason == reason
