"""Tombstones delete on upsert tables: in the batch transaction, exactly once, never a newer
row. A key that does not map to the upsert key is a dead letter with the reason."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from tests.integration.conftest import KAFKA, Harness
from tests.integration.test_adversity import slow_down

KEYS = 1000
VERSIONS = 5
DELETED = 300


def order(n: int, version: int) -> bytes:
    return orjson.dumps({
        "event_id": str(uuid.uuid4()), "customer_id": f"c-{n % 50:03d}", "seq": version,
        "occurred_at": datetime.now(UTC).isoformat(), "order_id": f"o-{n:05d}",
        "status": "paid", "amount": version, "currency": "EUR",
        "items": [{"sku": "s", "qty": 1, "price": version}],
    })


async def publish(topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def key(n: int) -> bytes:
    return f"o-{n:05d}".encode()


def test_tombstones_delete_exactly_once_through_a_sigkill(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch={"max_rows": 200, "linger_ms": 20},
                event_types={"order": {"write_mode": "upsert", "upsert_key": ["order_id"],
                                       "key_field": "order_id"}})
    h.migrate()
    try:
        h.produce(10, "-t", "page_view")  # creates the topics
        updates = [(key(n), order(n, v)) for v in range(1, VERSIONS + 1) for n in range(KEYS)]
        stones = [(key(n), None) for n in range(DELETED)]
        bad = [(b"\xff\xfe", None)]  # a key that is not UTF-8 text
        asyncio.run(publish(h.topics["order"], updates + stones + bad))
        slow_down(h, 0.03)
        first = h.start("first")
        h.wait_for("SELECT count(*) > 0 FROM orders WHERE seq >= 3", True, timeout=120,
                   alive=[first])
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        again = h.start("again", "--until-caught-up")
        assert again.wait(240) == 0, h.why_exited(again)
        rows = h.sql("SELECT min(seq), max(seq), count(*), "
                     "count(*) FILTER (WHERE order_id < $1) FROM orders", f"o-{DELETED:05d}")[0]
        assert tuple(rows) == (VERSIONS, VERSIONS, KEYS - DELETED, 0)
        reasons = h.sql("SELECT reason, error FROM weir_dead_letters ORDER BY \"offset\"")
        assert [r["reason"] for r in reasons] == ["tombstone_key"]
        assert "not UTF-8" in reasons[0]["error"]

        # Newer updates of ten deleted keys, then the whole topic read again by a rewind:
        # the older tombstones, replayed after the newer updates, leave them in place.
        asyncio.run(publish(h.topics["order"], [(key(n), order(n, 6)) for n in range(10)]))
        caught = h.start("newer", "--until-caught-up")
        assert caught.wait(120) == 0
        assert h.scalar("SELECT count(*) FROM orders") == KEYS - DELETED + 10
        rewind = h.weir("offsets", "rewind", "--to-earliest", "--execute")
        assert rewind.returncode == 0, rewind.stderr
        replay = h.start("replay", "--until-caught-up")
        assert replay.wait(240) == 0
        assert h.scalar("SELECT count(*) FROM orders") == KEYS - DELETED + 10
        assert h.scalar("SELECT count(*) FROM orders WHERE order_id < 'o-00010' "
                        "AND seq = 6") == 10
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 1  # once, not again
    finally:
        h.cleanup()


def test_on_an_insert_table_a_tombstone_is_still_a_dead_letter(harness: Harness) -> None:
    h = harness
    h.produce(10, "-t", "page_view")
    asyncio.run(publish(h.topics["order"], [(b"c-001", None)]))
    run = h.start("run", "--until-caught-up")
    assert run.wait(120) == 0
    assert h.scalar("SELECT reason FROM weir_dead_letters") == "empty_value"


def test_tombstones_delete_needs_an_upsert_keyed_by_the_kafka_key(tmp_path: Path) -> None:
    h = Harness(tmp_path, event_types={"order": {"tombstones": "delete"}})
    result = h.weir("check-config")
    assert result.returncode == 2
    assert "tombstones: delete needs write_mode upsert" in result.stderr


PAIR = {"write_mode": "upsert", "upsert_key": ["customer_id", "order_id"], "key_field": None}


def partition_of(key: bytes, partitions: int = 6) -> int:
    """Where Kafka's default partitioner puts ``key`` (murmur2 of its bytes)."""
    return DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))


def pair_order(customer: str, order_id: str, seq: int) -> bytes:
    return orjson.dumps({**orjson.loads(order(0, seq)), "customer_id": customer,
                         "order_id": order_id})


def test_a_tombstone_key_in_another_notation_deletes_no_newer_row(tmp_path: Path) -> None:
    # The same key, c1/o1, in the canonical form the updates carry and in another notation
    # (the fields the other way round): Kafka puts them on different partitions.
    h = Harness(tmp_path, event_types={"order": PAIR})
    h.migrate()
    canonical = b'{"customer_id":"c1","order_id":"o1"}'
    other = b'{"order_id":"o1","customer_id":"c1"}'
    assert partition_of(canonical) != partition_of(other)
    try:
        h.produce(20, "-t", "order")  # creates the topics; keyed as the table needs
        asyncio.run(publish(h.topics["order"], [(canonical, pair_order("c1", "o1", 1))]))
        asyncio.run(publish(h.topics["order"], [(other, None)]))
        asyncio.run(publish(h.topics["order"], [(canonical, pair_order("c1", "o1", 2))]))
        caught = h.start("first", "--until-caught-up")
        assert caught.wait(120) == 0, h.why_exited(caught)
        assert h.scalar("SELECT seq FROM orders WHERE order_id = 'o1'") == 2

        # The tombstone's partition alone read again, after the row reached seq 2.
        rewind = h.weir("offsets", "rewind", "--topic", h.topics["order"], "--partition",
                        str(partition_of(other)), "--to-earliest", "--execute")
        assert rewind.returncode == 0, rewind.stderr
        replay = h.start("replay", "--until-caught-up")
        assert replay.wait(120) == 0, h.why_exited(replay)
        assert h.scalar("SELECT seq FROM orders WHERE order_id = 'o1'") == 2
        dead = h.sql("SELECT reason, error, key FROM weir_dead_letters")
        assert [(d["reason"], bytes(d["key"])) for d in dead] == [("tombstone_key", other)]
        assert "canonical form" in dead[0]["error"]
        assert canonical.decode() in dead[0]["error"]  # the form expected, shown

        # The key `weir produce` gave an event is the one its tombstone carries: it deletes.
        produced = next(a for a in h.acks() if a["topic"] == h.topics["order"])
        fields = orjson.loads(produced["key"])
        assert list(fields) == ["customer_id", "order_id"]
        asyncio.run(publish(h.topics["order"], [(produced["key"].encode(), None)]))
        deleted = h.start("deleted", "--until-caught-up")
        assert deleted.wait(120) == 0, h.why_exited(deleted)
        assert h.scalar("SELECT count(*) FROM orders WHERE customer_id = $1 AND order_id = $2",
                        fields["customer_id"], fields["order_id"]) == 0
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 1
    finally:
        h.cleanup()


def test_a_tombstone_key_no_event_could_carry_is_a_dead_letter(tmp_path: Path) -> None:
    # order_id's schema allows 1 to 64 characters: a 70,000-byte key names no row an
    # event could have written.
    h = Harness(tmp_path, event_types={"order": {
        "write_mode": "upsert", "upsert_key": ["order_id"], "key_field": "order_id"}})
    h.migrate()
    try:
        h.produce(10, "-t", "page_view")  # creates the topics
        asyncio.run(publish(h.topics["order"], [(key(1), order(1, 1)),
                                                (b"o" * 70_000, None), (key(1), None)]))
        run = h.start("run", "--until-caught-up")
        assert run.wait(120) == 0, h.why_exited(run)
        assert h.scalar("SELECT count(*) FROM orders") == 0  # the well-formed one deleted
        dead = h.sql("SELECT reason, error FROM weir_dead_letters")
        assert [d["reason"] for d in dead] == ["tombstone_key"]
        assert "64 characters" in dead[0]["error"], dead[0]["error"]
    finally:
        h.cleanup()
