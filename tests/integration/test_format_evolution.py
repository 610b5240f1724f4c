"""A contract from a registry subject, evolving while Weir runs.

The order table is derived from an Avro subject by `weir migrate`. Version 2 adds an
optional field and removes one that has a default; events of both versions are
interleaved on one topic. They all land while Weir still reads with version 1's contract;
then `weir migrate` adds the new column and a restarted Weir fills it. A version 3 that
changes a field's type is refused by `weir migrate`, naming the field, and nothing changes.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import orjson
from aiokafka import AIOKafkaProducer

from processor.commands.produce.encode import frame
from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import SchemaRegistrySettings, load_settings
from processor.registry.client import RegistryClient
from tests.integration.conftest import KAFKA, REGISTRY, ROOT, Harness

V1 = orjson.loads((ROOT / "schemas/order.avsc").read_bytes())
V2 = {**V1, "fields": [f for f in V1["fields"] if f["name"] != "channel"]
      + [{"name": "coupon", "type": ["null", "string"], "default": None}]}
V3 = {**V1, "fields": [{**f, "type": "string"} if f["name"] == "seq" else f
                       for f in V1["fields"]]}


def _from_registry(config: dict[str, Any], subject: str, topic: str, fmt: str) -> None:
    """The order contract from ``subject``, version 1 (pinned while the first Weir runs),
    read from ``topic`` in ``fmt`` under that subject."""
    order = config["event_types"]["order"]
    order.pop("schema_file")
    order |= {"registry_subject": subject, "registry_version": 1}
    config["topics"] = [{"name": topic, "event_type": "order", "format": fmt,
                         "subject": subject}]


def _latest(config: dict[str, Any]) -> None:
    config["event_types"]["order"]["registry_version"] = "latest"


def _writer(schema: dict[str, Any], schema_id: int) -> Any:
    parsed = fastavro.parse_schema(schema)

    def encode(event: dict[str, Any]) -> bytes:
        record = {**event, "occurred_at": datetime.fromisoformat(event["occurred_at"]),
                  "amount": Decimal(repr(event["amount"]))}
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return frame(schema_id, out.getvalue())

    return encode


def test_a_registry_contract_evolves_additively_and_refuses_a_type_change(
        tmp_path: Path) -> None:
    subject = f"it-{uuid.uuid4().hex[:8]}-orders"
    registry = RegistryClient(SchemaRegistrySettings(url=REGISTRY))
    v1_id = registry.register(subject, orjson.dumps(V1).decode(), "AVRO")
    registry.set_compatibility(subject, "BACKWARD")
    h = Harness(tmp_path, partitions=2, schema_registry={"url": REGISTRY})
    topic = h.topics["order"]
    h.rewrite(lambda config: _from_registry(config, subject, topic, "avro"))
    h.migrate()
    try:
        columns = {r[0] for r in h.sql("SELECT column_name FROM information_schema.columns "
                                       "WHERE table_schema = $1 AND table_name = 'orders'",
                                       h.schema)}
        assert {"channel", "amount", "occurred_at"} <= columns
        assert "coupon" not in columns
        # The topic exists before Weir subscribes, as most topics do.
        asyncio.run(ensure_topics(load_settings(h.config), 2))
        weir = h.start("first")
        v2_id = registry.register(subject, orjson.dumps(V2).decode(), "AVRO")
        assert v2_id != v1_id
        writers = [_writer(V1, v1_id), _writer(V2, v2_id)]
        sample = SampleEvents(seed=4, keys=30)
        first = asyncio.run(_send(load_settings(h.config), topic, sample, writers, 600))
        h.wait_for("SELECT count(*) FROM orders", 600, 120, alive=[weir])
        # v2's events lack channel: v1's reader takes its default; coupon is in raw only.
        assert h.scalar("SELECT count(*) FROM orders WHERE raw ? 'coupon'") == 300
        weir.terminate()
        assert weir.wait(60) == 0

        h.rewrite(_latest)
        h.migrate()  # latest is v2 now: coupon becomes a nullable column
        assert "coupon" in {r[0] for r in h.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = 'orders'", h.schema)}
        second = h.start("second", "--until-caught-up")
        sent = first + asyncio.run(_send(load_settings(h.config), topic, sample, writers,
                                         600, coupon="SAVE10"))
        assert second.wait(300) == 0, h.why_exited(second)
        assert h.scalar("SELECT count(*) FROM orders") == len(sent) == 1200
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        assert h.scalar("SELECT count(*) FROM orders WHERE coupon = 'SAVE10'") == 300
        # v1's events under the v2 contract: coupon takes its default.
        assert h.scalar("SELECT count(*) FROM orders WHERE coupon IS NULL AND "
                        "kafka_offset >= 300") >= 300

        registry.set_compatibility(subject, "NONE")  # or the registry would refuse it
        registry.register(subject, orjson.dumps(V3).decode(), "AVRO")
        refused = h.weir("migrate")
        assert refused.returncode != 0
        assert "seq" in refused.stderr, refused.stderr
        assert "nothing was changed" in refused.stderr, refused.stderr
        assert h.scalar("SELECT data_type FROM information_schema.columns WHERE "
                        "table_schema = $1 AND table_name = 'orders' AND column_name = 'seq'",
                        h.schema) == "bigint"
    finally:
        h.cleanup()


async def _send(settings: Any, topic: str, sample: SampleEvents, writers: list[Any],
                count: int, coupon: str | None = None) -> list[tuple[int, int]]:
    """``count`` events, alternately written with each writer schema."""
    await ensure_topics(settings, 2)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for i in range(count):
            key, event = sample.make("order")
            if i % 2:
                event = {k: v for k, v in event.items() if k != "channel"}
                event["coupon"] = coupon
            futures.append(await producer.send(topic, writers[i % 2](event), key=key.encode()))
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


ORDER_PROTO = (ROOT / "schemas/order.proto").read_text()
PROTO_V2 = ORDER_PROTO.replace("  google.protobuf.StringValue channel = 10;\n",
                               "  google.protobuf.StringValue channel = 10;\n"
                               "  optional string coupon = 11;\n")
PROTO_V3 = ORDER_PROTO.replace("  int64 seq = 3;", "  string seq = 3;")


def _proto_writer(text: str, schema_id: int) -> Any:
    from google.protobuf import json_format
    from google.protobuf.message_factory import GetMessageClass

    from processor.registry.protobuf_schema import parse_proto
    message = GetMessageClass(parse_proto(text).message([0]))

    def encode(event: dict[str, Any]) -> bytes:
        built = json_format.ParseDict({k: v for k, v in event.items() if v is not None},
                                      message(), ignore_unknown_fields=True)
        return frame(schema_id, b"\x00" + built.SerializeToString())

    return encode


def test_a_protobuf_registry_contract_evolves_by_field_number(tmp_path: Path) -> None:
    subject = f"it-{uuid.uuid4().hex[:8]}-orders-proto"
    registry = RegistryClient(SchemaRegistrySettings(url=REGISTRY))
    v1_id = registry.register(subject, ORDER_PROTO, "PROTOBUF")
    h = Harness(tmp_path, partitions=2, schema_registry={"url": REGISTRY})
    topic = h.topics["order"]
    h.rewrite(lambda config: _from_registry(config, subject, topic, "protobuf"))
    h.migrate()
    try:
        # The topic exists before Weir subscribes, as most topics do.
        asyncio.run(ensure_topics(load_settings(h.config), 2))
        weir = h.start("first")
        v2_id = registry.register(subject, PROTO_V2, "PROTOBUF")
        writers = [_proto_writer(ORDER_PROTO, v1_id), _proto_writer(PROTO_V2, v2_id)]
        sample = SampleEvents(seed=6, keys=30)
        settings = load_settings(h.config)
        sent = asyncio.run(_send(settings, topic, sample, writers, 400, coupon="P10"))
        h.wait_for("SELECT count(*) FROM orders", 400, 120, alive=[weir])
        weir.terminate()
        assert weir.wait(60) == 0
        h.rewrite(_latest)
        h.migrate()
        second = h.start("second", "--until-caught-up")
        sent += asyncio.run(_send(settings, topic, sample, writers, 400, coupon="P20"))
        assert second.wait(300) == 0, h.why_exited(second)
        assert h.scalar("SELECT count(*) FROM orders") == len(sent) == 800
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        # Read with v1's contract, v2's new field was dropped; with v2's, it is a column.
        assert h.scalar("SELECT count(*) FROM orders WHERE coupon = 'P10'") == 0
        assert h.scalar("SELECT count(*) FROM orders WHERE coupon = 'P20'") == 200
        registry.register(subject, PROTO_V3, "PROTOBUF")
        refused = h.weir("migrate")
        assert refused.returncode != 0
        assert "seq" in refused.stderr, refused.stderr
    finally:
        h.cleanup()


def test_a_registry_contract_at_start_waits_for_the_registry_or_is_refused(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, schema_registry={"url": "http://127.0.0.1:9/apis/ccompat/v7",
                                           "timeout_s": 0.5})
    h.rewrite(lambda config: _from_registry(config, "never-answered", h.topics["order"],
                                            "avro"))
    try:
        checked = h.weir("check-config")
        assert checked.returncode == 2
        assert "registry_subject" in checked.stdout + checked.stderr
        assert "Traceback" not in checked.stderr
        weir = h.start("weir")  # weir run waits for the registry instead
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                "waiting" in line.get("event", "") for line in h.log_lines("weir")):
            time.sleep(0.5)
        assert weir.poll() is None, h.why_exited(weir)
        assert any("does not answer" in line.get("event", "") for line in h.log_lines("weir"))
    finally:
        h.cleanup()
