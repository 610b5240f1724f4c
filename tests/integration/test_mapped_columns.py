"""Mapped columns through the real pipeline: `weir migrate` makes them, `weir run` fills them.

A ``shipment`` event type maps nested fields, an array element, an epoch in milliseconds (as
the partitioning time) and a zone-less local time into typed columns. Against the real Kafka
and PostgreSQL: the table has the declared types and an index on a mapped column; every
good event's row equals a model computed here from the event (every mapped column); each
bad mapped value is a dead letter naming its path, and the rest are written; a mapped column
added later migrates additively and fills for the events after it.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from processor.commands.produce.producer import ensure_topics
from processor.core.settings import load_settings
from tests.integration.conftest import KAFKA, Harness

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object", "required": ["id", "placed_ms"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "placed_ms": {"type": "integer"},
        "shipping": {"type": ["object", "null"]},
        "lines": {"type": "array"},
        "local": {"type": "string"},
    },
}
MAPPED = [
    {"name": "country", "path": "shipping.address.country", "type": "text"},
    {"name": "weight", "path": "shipping.weight_kg", "type": "numeric"},
    {"name": "first_sku", "path": "lines[0].sku", "type": "text"},
    {"name": "first_qty", "path": "lines[0].qty", "type": "integer", "default": 1},
    {"name": "placed_at", "path": "placed_ms", "type": "timestamptz",
     "time_unit": "milliseconds"},
    {"name": "local_at", "path": "local", "type": "timestamptz", "time_zone": "Europe/Paris"},
    {"name": "tags", "path": "tags", "type": "text[]"},
    {"name": "scans", "path": "scans_ms", "type": "timestamptz[]",
     "time_unit": "milliseconds"},
]
PARIS = ZoneInfo("Europe/Paris")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def shipment_harness(tmp_path: Path, mapped: list[dict[str, Any]] | None = None) -> Harness:
    schema = tmp_path / "shipment.json"
    tmp_path.mkdir(parents=True, exist_ok=True)
    schema.write_text(orjson.dumps(SCHEMA).decode())
    h = Harness(tmp_path, partitions=3)
    topic = h.topics["order"].replace("orders", "shipments")
    h.topics["shipment"] = topic

    def add(config: dict[str, Any]) -> None:
        config["event_types"]["shipment"] = {
            "schema_file": str(schema), "table": "shipments", "id_field": "id",
            "time_field": "placed_at", "columns": MAPPED if mapped is None else mapped,
            "indexes": [{"columns": ["country", "placed_at"]},
                        {"columns": ["tags"], "method": "gin"}] if mapped is None else []}
        config["topics"].append({"name": topic, "event_type": "shipment"})
    h.rewrite(add)
    return h


def event(rand: random.Random, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "placed_ms": 1_764_064_800_000 + rand.randrange(86_400_000),
    }
    shape = rand.randrange(4)
    if shape:
        out["shipping"] = None if shape == 1 else {
            "address": {"country": rand.choice(["FR", "DE", "ÉS"])},
            **({"weight_kg": round(rand.uniform(0, 40), 3)} if shape == 3 else {})}
    out["lines"] = [{"sku": f"s{rand.randrange(99)}", **(
        {"qty": rand.randrange(1, 9)} if rand.random() < 0.5 else {})}
        for _ in range(rand.randrange(3))]
    if rand.random() < 0.5:
        out["local"] = (datetime(2026, 1, 1) + timedelta(
            minutes=rand.randrange(525_600))).isoformat()
    if rand.random() < 0.7:
        out["tags"] = rand.sample(["gift", "fragile", "éxpress", "b2b"], rand.randrange(4))
    if rand.random() < 0.5:
        out["scans_ms"] = [out["placed_ms"] + rand.randrange(10**6)
                           for _ in range(rand.randrange(3))]
    return out


def model(e: dict[str, Any]) -> dict[str, Any]:
    """The mapped columns, computed here from the event (independently of Weir)."""
    shipping = e.get("shipping") or {}
    first = e["lines"][0] if e["lines"] else {}
    local = e.get("local")
    return {
        "country": (shipping.get("address") or {}).get("country"),
        "weight": None if shipping.get("weight_kg") is None
        else Decimal(repr(shipping["weight_kg"])),
        "first_sku": first.get("sku"),
        "first_qty": first.get("qty", 1),
        "placed_at": EPOCH + timedelta(milliseconds=e["placed_ms"]),
        "local_at": None if local is None
        else datetime.fromisoformat(local).replace(tzinfo=PARIS).astimezone(UTC),
        "tags": e.get("tags"),
        "scans": None if "scans_ms" not in e
        else [EPOCH + timedelta(milliseconds=ms) for ms in e["scans_ms"]],
    }


BAD = [
    ({"shipping": {"address": ["FR"]}}, "path 'shipping.address.country': "
     "shipping.address is an array, not an object"),
    ({"lines": [{"sku": 12}]}, "path 'lines[0].sku': 12 is an integer, not a string"),
    ({"lines": [{"qty": 2**35}]}, "path 'lines[0].qty': 34359738368 is out of range"),
    ({"placed_ms": 10**16}, "path 'placed_ms': 10000000000000000 milliseconds since 1970 is "
     "outside the years 1 to 9999"),
    ({"local": "2026-13-01T00:00:00"}, "path 'local': '2026-13-01T00:00:00' is not a valid "
     "date-time"),
    ({"shipping": {"weight_kg": {"kg": 1}}}, "path 'shipping.weight_kg'"),
    ({"tags": ["a", ["b"]]}, "path 'tags': item [1]: ['b'] is an array, not a string"),
    ({"tags": "gift"}, "path 'tags': 'gift' is a string, not an array (text[])"),
    ({"scans_ms": [1, 10**17]}, "path 'scans_ms': item [1]: 100000000000000000 milliseconds"),
]


Headers = list[tuple[str, bytes | None]]


async def publish(h: Harness, topic: str, values: list[bytes],
                  keys: list[bytes | None] | None = None,
                  headers: list[Headers] | None = None) -> None:
    await ensure_topics(load_settings(h.config), 3)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        for i, value in enumerate(values):
            key = keys[i] if keys else str(i).encode()
            await producer.send(topic, value, key=key,
                                headers=headers[i] if headers else None)
        await producer.flush()
    finally:
        await producer.stop()


def test_mapped_columns_land_typed_and_bad_values_are_dead_letters(tmp_path: Path) -> None:
    h = shipment_harness(tmp_path)
    try:
        h.migrate()
        types = {r["column_name"]: r["data_type"] for r in h.sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'shipments'", h.schema)}
        assert {c["name"]: types[c["name"]] for c in MAPPED} == {
            "country": "text", "weight": "numeric", "first_sku": "text",
            "first_qty": "integer", "placed_at": "timestamp with time zone",
            "local_at": "timestamp with time zone", "tags": "ARRAY", "scans": "ARRAY"}
        assert h.scalar("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename "
                        "= 'shipments' AND indexdef LIKE '%(country, placed_at)%'",
                        h.schema) == 1
        assert h.scalar("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename "
                        "= 'shipments' AND indexdef LIKE '%USING gin (tags)%'", h.schema) == 1
        rand = random.Random(11)
        good = [event(rand, n) for n in range(2000)]
        bad = [{**event(rand, 10_000 + i), **change} for i, (change, _) in enumerate(BAD)]
        values = [orjson.dumps(e) for e in good[:1000] + bad + good[1000:]]
        asyncio.run(publish(h, h.topics["shipment"], values))
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]

        rows = {r["id"]: r for r in h.sql(
            "SELECT id::text, country, weight, first_sku, first_qty, placed_at, local_at, "
            "tags, scans, event_time FROM shipments")}
        assert len(rows) == len(good)
        for e in good:
            row = rows[e["id"]]
            assert {k: row[k] for k in model(e)} == model(e), e
            assert row["event_time"] == row["placed_at"]
        letters = h.sql("SELECT reason, error FROM weir_dead_letters ORDER BY \"offset\"")
        assert len(letters) == len(BAD)
        assert {r["reason"] for r in letters} == {"conversion_error"}
        errors = " | ".join(r["error"] for r in letters)
        for _, fragment in BAD:
            assert fragment in errors, (fragment, errors)

        # A mapped column added later: migrate adds it, later events fill it.
        def more(config: dict[str, Any]) -> None:
            config["event_types"]["shipment"]["columns"].append(
                {"name": "last_line_sku", "path": "lines[1].sku", "type": "text"})
        h.rewrite(more)
        plan = h.weir("migrate", "--dry-run")
        assert plan.returncode == 0, plan.stderr
        assert 'ADD COLUMN IF NOT EXISTS "last_line_sku" text;' in plan.stdout, plan.stdout
        assert h.scalar("SELECT count(*) FROM information_schema.columns WHERE table_schema "
                        "= $1 AND column_name = 'last_line_sku'", h.schema) == 0  # not applied
        h.migrate()
        h.migrate()  # again: nothing to change (the array types read back as declared)
        later = [event(rand, 20_000 + n) for n in range(200)]
        asyncio.run(publish(h, h.topics["shipment"], [orjson.dumps(e) for e in later]))
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        filled = {r["id"]: r["last_line_sku"] for r in h.sql(
            "SELECT id::text, last_line_sku FROM shipments")}
        assert len(filled) == len(good) + len(later)
        assert all(filled[e["id"]] is None for e in good)
        assert [filled[e["id"]] for e in later] == [
            e["lines"][1]["sku"] if len(e["lines"]) > 1 else None for e in later]
    finally:
        h.cleanup()


RECORD = [
    {"name": "placed_at", "path": "placed_ms", "type": "timestamptz",
     "time_unit": "milliseconds"},
    {"name": "tenant", "source": "header", "header": "tenant", "type": "text"},
    {"name": "trace", "source": "header", "header": "trace", "type": "bytea"},
    {"name": "attempt", "source": "header", "header": "attempt", "type": "integer",
     "default": 0},
    {"name": "order_key", "source": "key", "type": "text"},
    {"name": "from_topic", "source": "topic", "type": "text"},
    {"name": "sent_at", "source": "timestamp", "type": "timestamptz"},
]


def test_columns_from_the_key_headers_topic_and_timestamp(tmp_path: Path) -> None:
    h = shipment_harness(tmp_path, RECORD)
    try:
        h.migrate()
        types = {r["column_name"]: r["data_type"] for r in h.sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'shipments'", h.schema)}
        assert (types["tenant"], types["trace"], types["attempt"], types["sent_at"]) == (
            "text", "bytea", "integer", "timestamp with time zone")
        rand = random.Random(5)
        events = [event(rand, n) for n in range(300)]
        keys: list[bytes | None] = [f"o-{n}".encode() if n % 7 else None for n in range(300)]
        headers: list[Headers] = [
            [("tenant", f"t{n % 3}".encode()), ("trace", bytes([n % 256, 0, 255])),
             *([("attempt", str(n % 4).encode())] if n % 2 else [])] for n in range(300)]
        # Each alone among good ones: a tenant that is not UTF-8, an attempt that is no
        # integer. Dead letters; the rest land.
        bad_events = [event(rand, 1000), event(rand, 1001)]
        bad_headers: list[Headers] = [[("tenant", b"\xff\xfeacme")], [("attempt", b"2.5")]]
        asyncio.run(publish(h, h.topics["shipment"],
                            [orjson.dumps(e) for e in events + bad_events],
                            [*keys, b"k1", b"k2"], headers + bad_headers))
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = {r["id"]: r for r in h.sql(
            "SELECT id::text, tenant, trace, attempt, order_key, from_topic, sent_at, "
            "kafka_timestamp FROM shipments")}
        assert len(rows) == len(events)
        for n, e in enumerate(events):
            row = rows[e["id"]]
            assert row["tenant"] == f"t{n % 3}"
            assert bytes(row["trace"]) == bytes([n % 256, 0, 255])
            assert row["attempt"] == (n % 4 if n % 2 else 0)
            assert row["order_key"] == (f"o-{n}" if n % 7 else None)
            assert row["from_topic"] == h.topics["shipment"]
            assert row["sent_at"] == row["kafka_timestamp"]
        letters = h.sql("SELECT reason, error FROM weir_dead_letters ORDER BY error")
        assert [(r["reason"], r["error"]) for r in letters] == [
            ("conversion_error", "field 'attempt': header 'attempt': 2.5 is a number, not an "
             "integer"),
            ("conversion_error", "field 'tenant': header 'tenant' b'\\xff\\xfeacme' is not "
             "UTF-8 text")]
    finally:
        h.cleanup()
