"""Upsert mode: one row per business key holding its latest event, by Kafka offset."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from tests.integration.conftest import KAFKA, Harness

STATUSES = ("created", "paid", "shipped", "cancelled")


async def publish_updates(topic: str, orders: int, updates: int) -> None:
    """``updates`` versions of each order, keyed by order_id, interleaved across orders."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        for version in range(1, updates + 1):
            for n in range(orders):
                order_id = f"o-{n:05d}"
                event = {
                    "event_id": str(uuid.uuid4()), "customer_id": f"c-{n % 50:03d}",
                    "seq": version, "occurred_at": datetime.now(UTC).isoformat(),
                    "order_id": order_id, "status": STATUSES[version % len(STATUSES)],
                    "amount": version, "currency": "EUR",
                    "items": [{"sku": "s", "qty": 1, "price": version}],
                }
                await producer.send(topic, orjson.dumps(event), key=order_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_upsert_keeps_the_last_update_per_business_key(tmp_path: Path) -> None:
    h = Harness(tmp_path,
                event_types={"order": {"write_mode": "upsert", "upsert_key": ["order_id"],
                                       "key_field": "order_id"}},
                batch={"max_rows": 1000})
    h.migrate()
    try:
        h.produce(10, "-t", "page_view")  # creates the topics
        asyncio.run(publish_updates(h.topics["order"], orders=300, updates=10))
        run = h.start("first", "--until-caught-up")
        assert run.wait(180) == 0
        rows = h.sql("SELECT order_id, seq, status, amount FROM orders")
        assert len(rows) == 300
        last = STATUSES[10 % len(STATUSES)]
        assert all(r["seq"] == 10 and r["status"] == last and r["amount"] == 10 for r in rows)
        # Several updates of one key shared a batch (1000 rows a batch, 300 keys).
        # A second group replays every event from the start: older ones overwrite nothing.
        h.env["WEIR_KAFKA__GROUP_ID"] = h.group + "-replay"
        replay = h.start("replay", "--until-caught-up")
        assert replay.wait(180) == 0
        again = h.sql("SELECT min(seq), max(seq), count(*) FROM orders")[0]
        assert tuple(again) == (10, 10, 300)
    finally:
        h.cleanup()


async def publish_out_of_order(topic: str, orders: int) -> None:
    """Versions 1..5 of each order on two partitions, the newest ones first: partition 0
    gets versions 5 and 3, partition 1 gets 4, 2 and 1, each partition in that order."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=5)
    await producer.start()
    try:
        for partition, versions in ((0, (5, 3)), (1, (4, 2, 1))):
            for version in versions:
                for n in range(orders):
                    event = {
                        "event_id": str(uuid.uuid4()), "customer_id": f"c-{n % 50:03d}",
                        "seq": version, "occurred_at": datetime.now(UTC).isoformat(),
                        "order_id": f"o-{n:05d}", "status": STATUSES[version % 4],
                        "amount": version, "currency": "EUR",
                        "items": [{"sku": "s", "qty": 1, "price": version}],
                    }
                    await producer.send(topic, orjson.dumps(event), partition=partition,
                                        key=f"c-{n % 50:03d}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_versions_from_two_partitions_out_of_order_end_at_the_highest(tmp_path: Path) -> None:
    h = Harness(tmp_path, partitions=2, batch={"max_rows": 70},
                event_types={"order": {"write_mode": "upsert", "upsert_key": ["order_id"],
                                       "version_field": "seq"}})
    h.migrate()
    try:
        h.produce(10, "-t", "page_view")  # creates the topics
        asyncio.run(publish_out_of_order(h.topics["order"], orders=200))
        run = h.start("first", "--until-caught-up")
        assert run.wait(180) == 0
        rows = h.sql("SELECT min(seq), max(seq), count(*), min(amount) FROM orders")[0]
        assert tuple(rows) == (5, 5, 200, 5)
        # A replay of everything, by a second group, changes nothing.
        h.env["WEIR_KAFKA__GROUP_ID"] = h.group + "-replay"
        replay = h.start("replay", "--until-caught-up")
        assert replay.wait(180) == 0
        assert tuple(h.sql("SELECT min(seq), max(seq), count(*) FROM orders")[0]) == (5, 5, 200)
    finally:
        h.cleanup()


def test_an_upsert_not_keyed_by_the_kafka_key_needs_a_version_field(tmp_path: Path) -> None:
    h = Harness(tmp_path, event_types={"order": {"write_mode": "upsert",
                                                 "upsert_key": ["order_id"]}})
    result = h.weir("check-config")
    assert result.returncode == 2
    assert "version_field is required" in result.stderr
    assert "not the Kafka key" in result.stderr


def channel_of(n: int, version: int) -> tuple[bool, str | None]:
    """Whether version ``version`` of order ``n`` carries ``channel``, and its value."""
    if version == 1:
        return True, "web"
    if version == 3:
        return True, None  # an explicit null: keeps the stored value too
    if version == 5 and n % 2 == 0:
        return True, "app"
    return False, None  # absent


async def publish_partial(topic: str, orders: int, versions: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        for version in versions:
            for n in range(orders):
                order_id = f"o-{n:05d}"
                event: dict[str, object] = {
                    "event_id": str(uuid.uuid4()), "customer_id": f"c-{n % 50:03d}",
                    "seq": version, "occurred_at": datetime.now(UTC).isoformat(),
                    "order_id": order_id, "status": STATUSES[version % len(STATUSES)],
                    "amount": version, "currency": "EUR",
                    "items": [{"sku": "s", "qty": 1, "price": version}],
                }
                present, channel = channel_of(n, version)
                if present:
                    event["channel"] = channel
                await producer.send(topic, orjson.dumps(event), key=order_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_merge_keeps_what_a_newer_event_leaves_out(tmp_path: Path) -> None:
    h = Harness(tmp_path,
                event_types={"order": {"write_mode": "upsert", "upsert_key": ["order_id"],
                                       "key_field": "order_id", "update_mode": "merge"}},
                batch={"max_rows": 1000})
    h.migrate()
    try:
        h.produce(10, "-t", "page_view")  # creates the topics
        orders = 200
        # Versions 1 to 3 in one run: several versions of a key share a batch, folded there.
        asyncio.run(publish_partial(h.topics["order"], orders, range(1, 4)))
        assert h.start("first", "--until-caught-up").wait(180) == 0
        rows = h.sql("SELECT order_id, seq, channel, amount FROM orders")
        assert len(rows) == orders
        assert {(r["seq"], r["channel"], r["amount"]) for r in rows} == {(3, "web", 3)}
        # Versions 4 to 6 later: merged into the stored rows.
        asyncio.run(publish_partial(h.topics["order"], orders, range(4, 7)))
        assert h.start("second", "--until-caught-up").wait(180) == 0
        expected = {f"o-{n:05d}": (6, "app" if n % 2 == 0 else "web", 6, f"{6}")
                    for n in range(orders)}
        got = {r["order_id"]: (r["seq"], r["channel"], r["amount"], r["raw_seq"])
               for r in h.sql("SELECT order_id, seq, channel, amount, raw->>'seq' AS raw_seq "
                              "FROM orders")}
        assert got == expected  # raw is the newest event's
        # A replay from the start, in a new group: older events change nothing.
        h.env["WEIR_KAFKA__GROUP_ID"] = h.group + "-replay"
        assert h.start("replay", "--until-caught-up").wait(180) == 0
        again = {r["order_id"]: (r["seq"], r["channel"], r["amount"], r["raw_seq"])
                 for r in h.sql("SELECT order_id, seq, channel, amount, "
                                "raw->>'seq' AS raw_seq FROM orders")}
        assert again == expected
    finally:
        h.cleanup()
