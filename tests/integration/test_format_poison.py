"""Poison in the framed formats: each bad record is one dead letter with its reason.

One pipeline reads an Avro topic and a Protobuf topic of orders. 2,000 good events go to
each; among them, at known offsets, one record of every kind of bad input a framed topic
can carry. Afterwards: every good event is a row, every bad record exactly one dead
letter, with the reason that names what was wrong and its bytes exactly as produced (what
`weir dlq replay` republishes), and `weir run --until-caught-up` exited 0.
"""

from __future__ import annotations

import asyncio
import io
import random
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import orjson
from aiokafka import AIOKafkaProducer

from processor.commands.produce.encode import encoder, frame
from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import SchemaRegistrySettings, load_settings
from processor.registry.client import RegistryClient
from tests.integration.conftest import KAFKA, REGISTRY, ROOT, Harness

ORDER_AVSC = orjson.loads((ROOT / "schemas/order.avsc").read_bytes())


def _avro_bytes(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def _with(field: str, new_type: Any) -> dict[str, Any]:
    """The order schema with one field's type replaced: writes bytes the real schema's
    reader takes for another value (a wider decimal, a raw long for a time)."""
    fields = [{**f, "type": new_type} if f["name"] == field else f
              for f in ORDER_AVSC["fields"]]
    return {**ORDER_AVSC, "fields": fields}


def _record(event: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime
    return {**event, "occurred_at": datetime.fromisoformat(event["occurred_at"]),
            "amount": Decimal(repr(event["amount"]))}


def test_each_bad_framed_record_is_one_dead_letter_with_its_reason(tmp_path: Path) -> None:
    h = Harness(tmp_path, partitions=1, schema_registry={"url": REGISTRY})
    suffix = uuid.uuid4().hex[:8]
    avro_topic, proto_topic = f"it.{suffix}.avro", f"it.{suffix}.proto"
    h.topics = {"order": avro_topic, "page_view": proto_topic}  # what cleanup deletes
    h.rewrite(lambda config: config.update(topics=[
        {"name": avro_topic, "event_type": "order", "format": "avro"},
        {"name": proto_topic, "event_type": "order", "format": "protobuf"}]))
    h.migrate()
    try:
        _run_matrix(h, avro_topic, proto_topic)
    finally:
        h.cleanup()


def _run_matrix(h: Harness, avro_topic: str, proto_topic: str) -> None:
    settings = load_settings(h.config)
    topics = {t.name: t for t in settings.topics}
    to_avro = encoder(settings, topics[avro_topic], "order", "avro")
    to_proto = encoder(settings, topics[proto_topic], "order", "protobuf")
    registry = RegistryClient(SchemaRegistrySettings(url=REGISTRY))
    avro_id = registry.version(f"{avro_topic}-value").schema.schema_id
    proto_id = registry.version(f"{proto_topic}-value").schema.schema_id
    # A schema registered under another subject (its text differs, so its id does too).
    other_id = registry.register(f"other-{uuid.uuid4().hex[:8]}-value",
                                 orjson.dumps({**ORDER_AVSC, "doc": "another stream"}).decode(),
                                 "AVRO")
    sample = SampleEvents(seed=5, keys=20)
    good = sample.make("order")[1]
    good_avro = to_avro(good)
    body = _avro_bytes(ORDER_AVSC, _record(good))
    not_utf8 = _avro_bytes(ORDER_AVSC, _record({**good, "customer_id": "@@@@"})).replace(
        b"@@@@", b"\xff\xfe\xfd\xfc")
    poisons: dict[str, tuple[str, bytes | None, str]] = {
        # name: (topic, value, expected reason)
        "wrong magic byte": (avro_topic, b"\x07" + good_avro[1:], "bad_framing"),
        "a header cut short": (avro_topic, b"\x00\x00\x01", "bad_framing"),
        "plain JSON on a framed topic": (avro_topic, orjson.dumps(good), "bad_framing"),
        "a schema GUID": (avro_topic, b"\x01" + uuid.uuid4().bytes + body, "unsupported_framing"),
        "an id the registry does not know": (avro_topic, frame(2**31 - 7, body),
                                             "unknown_schema_id"),
        "an id of another subject": (avro_topic, frame(other_id, body), "wrong_subject"),
        "a Protobuf id on the Avro topic": (avro_topic, frame(proto_id, body),
                                            "wrong_schema_type"),
        "a truncated payload": (avro_topic, good_avro[:-6], "decode_error"),
        "bytes after the record": (avro_topic, good_avro + b"\x00\x00", "decode_error"),
        "an Avro string that is not UTF-8": (avro_topic, frame(avro_id, not_utf8),
                                             "decode_error"),
        "a decimal past its precision": (avro_topic, frame(avro_id, _avro_bytes(
            _with("amount", {"type": "bytes", "logicalType": "decimal", "precision": 20,
                             "scale": 2}),
            {**_record(good), "amount": Decimal("123456789012345.67")})), "conversion_error"),
        "a time past the year 9999": (avro_topic, frame(avro_id, _avro_bytes(
            _with("occurred_at", "long"), {**_record(good), "occurred_at": 2**62})),
            "conversion_error"),
        "a NUL in a text": (avro_topic, to_avro({**good, "order_id": "o-\x00-1"}),
                            "conversion_error"),
        "a value the contract refuses": (avro_topic, to_avro({**good, "seq": 0}),
                                         "schema_violation"),
        "a tombstone": (avro_topic, None, "empty_value"),
        "an unknown message index": (proto_topic, frame(proto_id, b"\x02\x02" + b"\x08\x01"),
                                     "unknown_message_index"),
        "a Protobuf field of another wire type": (
            proto_topic, frame(proto_id, b"\x00" + b"\x1a\x03abc"), "decode_error"),
        "a Protobuf field the schema does not declare": (
            proto_topic, frame(proto_id, b"\x00" + b"\xf8\x06\x01"), "decode_error"),
    }
    assert len(poisons) >= 10
    placed = asyncio.run(_publish(settings, sample, {avro_topic: to_avro, proto_topic: to_proto},
                                  poisons))
    weir = h.start("weir", "--until-caught-up")
    assert weir.wait(300) == 0, h.why_exited(weir)

    dead = {(r["topic"], r["offset"]): r for r in h.sql(
        "SELECT topic, \"offset\", reason, error, value FROM weir_dead_letters")}
    missing = [n for n, (t, _, _) in poisons.items() if (t, placed[n]) not in dead]
    assert not missing, (missing, h.scalar("SELECT count(*) FROM orders"))
    assert len(dead) == len(poisons)
    for name, (topic, value, reason) in poisons.items():
        found = dead[(topic, placed[name])]
        assert found["reason"] == reason, (name, found["reason"], found["error"])
        assert found["value"] == value, name  # the framed bytes, exactly as produced
        assert found["error"], name
    assert h.scalar("SELECT count(*) FROM orders") == 2 * 2000


async def _publish(settings: Any, sample: SampleEvents,
                   encoders: dict[str, Callable[[dict[str, Any]], bytes]],
                   poisons: dict[str, tuple[str, bytes | None, str]]) -> dict[str, int]:
    """2,000 good events per topic with the poisons among them; each poison's offset."""
    await ensure_topics(settings, 1)
    rand = random.Random(3)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    placed: dict[str, int] = {}
    try:
        for topic, encode in encoders.items():
            mine = [n for n, (t, _, _) in poisons.items() if t == topic]
            slots = dict(zip(rand.sample(range(1, 2000), len(mine)), mine, strict=True))
            for i in range(2000):
                if i in slots:
                    _, value, _ = poisons[slots[i]]
                    sent = await (await producer.send(topic, value, key=b"k"))
                    placed[slots[i]] = sent.offset
                key, event = sample.make("order")
                await producer.send(topic, encode(event), key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return placed
