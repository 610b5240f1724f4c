"""Debezium's change topics as Kafka has them: which exist, and the newest change of each.

A mirror's shape comes from the change events themselves: Kafka Connect's JSON converter
(``schemas.enable=true``, its default) sends each with the Connect schema of the captured
table's row; an Avro converter registers the envelope's schema and frames each event with
its id, and that schema, read back as Connect's (:func:`connect_schema_of_avro`), says the
same. The record's key names the row's primary key (JSON, or Avro in the same framing).
This reads, for many topics at once, the newest change event that carries a schema:
``weir cdc-contract`` writes a contract from it, and ``cdc.mirrors`` derives its mirrors
from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processor.core.connections import kafka_client
from processor.core.debezium_types import connect_schema_of_avro, record_struct
from processor.core.settings import Settings
from processor.decode.formats.framing import MAGIC, PREFIX
from processor.registry.client import RegistryClient, SchemaNotFound

NEWEST = 200  # records read back per partition, past tombstones and schemaless records
READ_S = 30.0  # at most this long reading them back, however many topics


@dataclass(frozen=True, slots=True)
class NewestChange:
    """A topic's newest change event with an embedded schema: the envelope's schema, and
    the field names of its record key (the row's primary key; empty for a table without
    one, whose changes Debezium sends unkeyed)."""

    schema: dict[str, Any]
    key: tuple[str, ...]
    timestamp: int
    # An Avro change: the envelope's registered schema (references inlined), which the
    # mirror reads every version of the subject as; None for the JSON converter's.
    reader: Any = None


@dataclass(frozen=True, slots=True)
class _Framed:
    """A framed change's place: its value's schema id, its key, its timestamp."""

    schema_id: int
    key: bytes | None
    timestamp: int


async def list_topics(settings: Settings) -> list[str]:
    """The cluster's topics, Kafka's internal ones left out."""
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    return sorted(n for n in names if not n.startswith("__"))


async def newest_changes(settings: Settings, topics: Iterable[str],
                         framed: Collection[str] = ()) -> dict[str, NewestChange]:
    """Per topic, its newest change event with an embedded schema (``framed`` topics: with
    a registered Avro envelope, under the topic's ``-value`` subject); a topic that has
    none among the newest :data:`NEWEST` records of each partition (or does not exist) is
    left out."""
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(set(topics)))
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described
           if d["error_code"] == 0 for p in d["partitions"]]
    best = await _newest(settings, tps, framed) if tps else {}
    changes = {t: c for t, c in best.items() if isinstance(c, NewestChange)}
    places = {t: c for t, c in best.items() if isinstance(c, _Framed)}
    if places:
        changes.update(await asyncio.to_thread(_registered, settings, places))
    return changes


async def _newest(settings: Settings, tps: list[TopicPartition], framed: Collection[str]
                  ) -> dict[str, NewestChange | _Framed]:
    """Per topic, its newest change with an embedded schema, or framed."""
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka), enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    best: dict[str, NewestChange | _Framed] = {}
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        todo = set()
        for tp in tps:
            first = max(starts[tp], ends[tp] - NEWEST)
            if first < ends[tp]:
                consumer.seek(tp, first)
                todo.add(tp)
        deadline = time.monotonic() + READ_S
        while todo and time.monotonic() < deadline:
            batch = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, records in batch.items():
                read = _framed if tp.topic in framed else _change
                for record in records:
                    found = read(record.key, record.value, record.timestamp)
                    old = best.get(tp.topic)
                    if found is not None and (old is None or found.timestamp >= old.timestamp):
                        best[tp.topic] = found
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
            if not batch:
                break  # nothing more within the wait: take what was read
    finally:
        await consumer.stop()
    return best


def _framed(key: bytes | None, value: bytes | None, timestamp: int) -> _Framed | None:
    """A value in the registry's framing: its schema id and the record's place."""
    if not value or value[0] != MAGIC or len(value) < PREFIX:
        return None
    return _Framed(int.from_bytes(value[1:PREFIX], "big"), key, timestamp)


def _registered(settings: Settings, places: dict[str, _Framed]) -> dict[str, NewestChange]:
    """The framed changes whose schema id the registry has as a Debezium envelope in Avro,
    registered under their topic's ``-value`` subject (blocking: the registry's calls)."""
    client = RegistryClient(settings.schema_registry)
    envelopes: dict[int, tuple[tuple[Any, dict[str, Any]] | None, list[str]]] = {}
    found: dict[str, NewestChange] = {}
    for topic, place in places.items():
        if place.schema_id not in envelopes:
            envelope = _envelope(client, place.schema_id)
            envelopes[place.schema_id] = envelope, (
                client.subjects_of(place.schema_id) if envelope is not None else [])
        envelope, subjects = envelopes[place.schema_id]
        if envelope is None or f"{topic}-value" not in subjects:
            continue
        document, schema = envelope
        found[topic] = NewestChange(schema, _key_names(client, place.key), place.timestamp,
                                    document)
    return found


def _envelope(client: RegistryClient, schema_id: int
              ) -> tuple[Any, dict[str, Any]] | None:
    """(the Avro document, its Connect schema) of a schema id that is a Debezium envelope;
    None for any other."""
    document = _avro_document(client, schema_id)
    if document is None:
        return None
    try:
        connect = connect_schema_of_avro(document)
    except (ValueError, TypeError, KeyError):
        return None
    return (document, connect) if record_struct(connect, "after") is not None else None


def _avro_document(client: RegistryClient, schema_id: int) -> Any:
    """The Avro schema of ``schema_id`` (its references inlined), parsed; None if the
    registry has no such id, or it is not Avro."""
    try:
        schema = client.resolve(client.schema(schema_id))
    except SchemaNotFound:
        return None
    if schema.schema_type != "AVRO":
        return None
    try:
        return orjson.loads(schema.text)
    except orjson.JSONDecodeError:
        return None


def _key_names(client: RegistryClient, key: bytes | None) -> tuple[str, ...]:
    """The field names of a record key: JSON (with or without its schema), or an Avro
    record in the registry's framing."""
    if key and key[0] == MAGIC and len(key) >= PREFIX:
        document = _avro_document(client, int.from_bytes(key[1:PREFIX], "big"))
        fields = document.get("fields") if isinstance(document, dict) else None
        return tuple(f["name"] for f in fields or () if isinstance(f, dict)
                     and isinstance(f.get("name"), str))
    return _json_key_names(key)


def _change(key: bytes | None, value: bytes | None, timestamp: int) -> NewestChange | None:
    """A change event with an embedded schema of ``after`` (and its key's fields), or None."""
    event = _json(value)
    schema = event.get("schema") if isinstance(event, dict) else None
    if not isinstance(schema, dict) or record_struct(schema, "after") is None:
        return None
    return NewestChange(schema, _json_key_names(key), timestamp)


def _json_key_names(key: bytes | None) -> tuple[str, ...]:
    """The field names of a JSON record key (the key converter's schema on or off)."""
    fields = _json(key)
    if isinstance(fields, dict) and "payload" in fields and "schema" in fields:
        fields = fields["payload"]
    return tuple(fields) if isinstance(fields, dict) else ()


def _json(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
