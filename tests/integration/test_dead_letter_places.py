"""Every event ends in its table or in exactly one dead-letter place: the Kafka topic, else
the PostgreSQL table, else the local spool, drained when a place returns (issue 4).

Real Kafka and PostgreSQL; the DLQ topic is made unavailable by deleting it (the broker has
auto.create.topics.enable=false), PostgreSQL by halting a private server.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.records import Chunk, DeadLetter
from processor.core.settings import load_settings
from processor.deadletter.topic import DeadLetterTopic
from tests.integration.conftest import KAFKA, ROWS, Harness
from tests.integration.servers import PrivatePostgres, free_port

Coords = tuple[str, int, int]

# The kinds of bad record in the mixed stream, and the reason each must be dead-lettered with.
EXPECTED_REASON = {
    "undecodable": "decode_error", "invalid_utf8": "decode_error",
    "not_an_object": "not_an_object", "wrong_type": "schema_violation",
    "missing_field": "schema_violation", "transform_raises": "transform_error",
    "check_rejects": "rejected_by_table", "oversized": "too_large",
}
MAX_MESSAGE_BYTES = 16_384


def dlq_harness(tmp_path: Path, **overrides: Any) -> Harness:
    dead_letters = {"topic_enabled": True, "topic_timeout_s": 3,
                    **overrides.pop("dead_letters", {})}
    h = Harness(tmp_path, dead_letters=dead_letters, **overrides)
    # Harness.cleanup deletes every topic named here: the dead-letter topics too.
    h.topics.update({f"{k}_dlq": f"{v}.dlq" for k, v in list(h.topics.items())})
    return h


def source_topics(h: Harness) -> list[str]:
    return [h.topics["order"], h.topics["page_view"]]


def dlq_topics(h: Harness) -> list[str]:
    return [f"{t}.dlq" for t in source_topics(h)]


async def _admin(action: str, topics: list[str]) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        if action == "delete":
            await admin.delete_topics(topics)
            for _ in range(100):
                if not set(topics) & set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.2)
        return set(await admin.list_topics())
    finally:
        await admin.close()


def existing_topics() -> set[str]:
    return asyncio.run(_admin("list", []))


def delete_topics(topics: list[str]) -> None:
    left = asyncio.run(_admin("delete", topics))
    assert not set(topics) & left


async def _read_dlq(topics: list[str]) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        # `weir migrate` made them with kafka.topic_partitions (6 in the harness) partitions.
        tps = [TopicPartition(t, p) for t in topics for p in range(6)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def read_dlq(h: Harness) -> dict[Coords, list[Any]]:
    """The dead-letter topics' records by source coordinates (copies grouped together)."""
    found: dict[Coords, list[Any]] = {}
    for record in asyncio.run(_read_dlq(dlq_topics(h))):
        headers = {k: v.decode() for k, v in record.headers}
        coords = (headers["weir-source-topic"], int(headers["weir-source-partition"]),
                  int(headers["weir-source-offset"]))
        found.setdefault(coords, []).append((record, headers))
    return found


def table_dead_letters(h: Harness) -> dict[Coords, Any]:
    return {(r["topic"], r["partition"], r["offset"]): r for r in h.sql(
        'SELECT topic, partition, "offset", reason, stage, value FROM weir_dead_letters')}


def written(h: Harness) -> set[Coords]:
    return {(r[0], r[1], r[2]) for r in h.sql(
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM orders UNION ALL "
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM page_views")}


def bad_record(kind: str, sample: SampleEvents) -> tuple[str, str, bytes]:
    """(event type, key, value) of one bad record of ``kind``."""
    event_type = "page_view" if kind == "transform_raises" else "order"
    key, event = sample.make(event_type)
    if kind == "undecodable":
        return event_type, key, b"\x00\x01\x02 not json at all {"
    if kind == "invalid_utf8":
        # A whole, valid event but for one string that is not UTF-8.
        return event_type, key, orjson.dumps(event)[:-1] + b', "note": "caf\xe9"}'
    if kind == "not_an_object":
        return event_type, key, orjson.dumps([event])
    if kind == "wrong_type":
        event["seq"] = str(event["seq"])
    elif kind == "missing_field":
        del event["occurred_at"]
    elif kind == "transform_raises":
        event["url"] = "http://[::1/broken"  # urlsplit: Invalid IPv6 URL
    elif kind == "check_rejects":
        event["amount"] = 5_000_000  # valid per the contract; the table's CHECK refuses it
    elif kind == "oversized":
        event["note"] = "x" * (MAX_MESSAGE_BYTES + 1000)
    return event_type, key, orjson.dumps(event)


async def _produce_mixed(h: Harness, total: int, every: int) -> tuple[dict[Coords, str],
                                                                        dict[Coords, bytes]]:
    """``total`` records, every ``every``-th one bad; returns the bad ones' kinds and the
    good ones' coordinates."""
    await ensure_topics(load_settings(h.config), 6)
    sample = SampleEvents(seed=11)
    kinds = list(EXPECTED_REASON)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=20,
                                enable_idempotence=True)
    await producer.start()
    sent: list[tuple[str | None, bytes, asyncio.Future[Any]]] = []
    try:
        for n in range(total):
            kind = kinds[(n // every) % len(kinds)] if n % every == every - 1 else None
            if kind is None:
                event_type = "order" if n % 3 else "page_view"
                key, event = sample.make(event_type)
                value = orjson.dumps(event)
            else:
                event_type, key, value = bad_record(kind, sample)
            future = await producer.send(h.topics[event_type], value, key=key.encode())
            sent.append((kind, value, future))
        bad: dict[Coords, str] = {}
        values: dict[Coords, bytes] = {}
        for kind, value, future in sent:
            meta = await future
            coords = (meta.topic, meta.partition, meta.offset)
            values[coords] = value
            if kind is not None:
                bad[coords] = kind
        return bad, values
    finally:
        await producer.stop()


def test_mixed_stream_every_event_in_its_table_or_one_dead_letter_place(
    tmp_path: Path,
) -> None:
    total = 50_000
    h = dlq_harness(tmp_path, pipeline={"max_message_bytes": MAX_MESSAGE_BYTES},
                    dead_letters={"topic_timeout_s": 30})
    migrated = h.weir("migrate")
    assert migrated.returncode == 0, migrated.stderr
    try:
        assert set(dlq_topics(h)) <= existing_topics()  # `weir migrate` created them
        h.sql("ALTER TABLE orders ADD CONSTRAINT amount_below_a_million "
              "CHECK (amount < 1000000)")
        bad, values = asyncio.run(_produce_mixed(h, total, every=50))
        assert Counter(bad.values()) == Counter(dict.fromkeys(EXPECTED_REASON, 125))
        weir = h.start("weir", "--until-caught-up")
        assert weir.wait(600) == 0
        rows = written(h)
        in_topic = read_dlq(h)
        in_table = table_dead_letters(h)
        # rows + dead letters (topic deduplicated by source coordinates, plus table) = produced
        assert len(rows) == h.scalar(ROWS)  # no row twice
        assert len(rows) + len(in_topic) + len(in_table) == total
        assert not (set(in_topic) & set(in_table))
        assert not (rows & set(bad))
        assert set(in_topic) | set(in_table) == set(bad)
        # Kafka was healthy all along: the first place took every one, once (no crash).
        assert set(in_topic) == set(bad)
        assert all(len(copies) == 1 for copies in in_topic.values())
        for coords, copies in in_topic.items():
            record, headers = copies[0]
            assert headers["weir-error-class"] == EXPECTED_REASON[bad[coords]], coords
            assert record.value == values[coords]  # the original bytes
            assert headers["weir-error-message"]
            assert headers["weir-stage"]
            assert headers["weir-consumer-group"] == h.group
            assert int(headers["weir-attempts"]) >= 1
            assert headers["weir-failed-at"]
        for coords, row in in_table.items():
            assert row["reason"] == EXPECTED_REASON[bad[coords]], coords
        check_rejects = [c for c, k in bad.items() if k == "check_rejects"]
        rejected = [in_topic[c][0][1] if c in in_topic else None for c in check_rejects]
        assert all(r is None or ("CheckViolationError" in r["weir-error-message"]
                                 and r["weir-stage"] == "sink") for r in rejected)
        # Good neighbours of every bad event were written.
        for topic, partition, offset in bad:
            for near in (offset - 1, offset + 1):
                coords = (topic, partition, near)
                if coords in values and coords not in bad:
                    assert coords in rows, f"neighbour {coords} of a bad event is missing"
        # The table stays unique on its source key.
        assert h.scalar("SELECT count(*) = count(DISTINCT (topic, partition, \"offset\")) "
                        "FROM weir_dead_letters") is True
    finally:
        h.cleanup()


def placed_metric(port: int) -> dict[str, float]:
    """``weir_dead_letters_placed_total`` by place, scraped from a running Weir."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(
        r'^weir_dead_letters_placed_total\{place="(\w+)"\} (\S+)$', text, re.MULTILINE)}


def test_dlq_topic_gone_dead_letters_land_in_the_table(tmp_path: Path) -> None:
    port = free_port()
    h = dlq_harness(tmp_path, metrics={"enabled": True, "port": port})
    h.migrate()
    try:
        delete_topics(dlq_topics(h))  # and the broker will not auto-create them
        h.produce(3000, "--invalid-ratio", "0.05")
        acks = h.acks()
        invalid = {(a["topic"], a["partition"], a["offset"]) for a in acks if "invalid" in a}
        assert invalid
        weir = h.start("weir")
        h.wait_for(f"{ROWS} + (SELECT count(*) FROM weir_dead_letters)", len(acks),
                   timeout=240, alive=[weir])
        # The counter moves just after the commit that the query above saw.
        deadline = time.monotonic() + 30
        while placed_metric(port) != {"table": len(invalid)} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert placed_metric(port) == {"table": len(invalid)}
        weir.send_signal(signal.SIGTERM)
        assert weir.wait(60) == 0
        assert set(table_dead_letters(h)) == invalid
        assert h.scalar(ROWS) == len(acks) - len(invalid)
        assert not set(dlq_topics(h)) & existing_topics()
        events = [line.get("event", "") for line in h.log_lines("weir")]
        assert any("fall back to the table" in e for e in events)
    finally:
        h.cleanup()


def test_broker_refusing_a_dead_letter_sends_that_one_to_the_table(tmp_path: Path) -> None:
    """The dead-letter topics take records of at most 2 KB (max.message.bytes): oversized
    dead letters are refused by the broker and land in the table, the others in the topic."""
    h = dlq_harness(tmp_path, dead_letters={"topic_retry_s": 0.01}, batch={"max_rows": 10},
                    pipeline={"lanes": 1, "max_message_bytes": 4096})

    async def small_topics() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            await admin.create_topics([
                NewTopic(t, num_partitions=6, replication_factor=1,
                         topic_configs={"max.message.bytes": "2048"}) for t in dlq_topics(h)])
        finally:
            await admin.close()

    asyncio.run(small_topics())
    h.migrate()  # the topics exist: migrate leaves them as they are
    try:
        async def produce() -> dict[Coords, str]:
            await ensure_topics(load_settings(h.config), 6)
            sample = SampleEvents(seed=5)
            producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
            await producer.start()
            try:
                sent = []
                for n in range(600):
                    key, event = sample.make("order")
                    kind = ("oversized" if n % 20 == 0 else "missing_field" if n % 20 == 10
                            else None)
                    if kind == "oversized":
                        event["note"] = "x" * 5000
                    elif kind == "missing_field":
                        del event["occurred_at"]
                    meta = await producer.send_and_wait(h.topics["order"],
                                                        orjson.dumps(event), key=key.encode())
                    sent.append((kind, (meta.topic, meta.partition, meta.offset)))
                return {coords: kind for kind, coords in sent if kind}
            finally:
                await producer.stop()

        bad = asyncio.run(produce())
        weir = h.start("weir", "--until-caught-up")
        assert weir.wait(300) == 0
        in_topic, in_table = read_dlq(h), table_dead_letters(h)
        oversized = {c for c, k in bad.items() if k == "oversized"}
        assert oversized <= set(in_table)  # refused by the broker: the table took them
        assert {in_table[c]["reason"] for c in oversized} == {"too_large"}
        assert set(in_topic) | set(in_table) == set(bad)
        assert not set(in_topic) & set(in_table)
        assert in_topic  # the small ones keep going to the topic
        assert all(copies[0][1]["weir-error-class"] == "schema_violation"
                   for copies in in_topic.values())
        assert h.scalar(ROWS) == 600 - len(bad)
        events = [line.get("event", "") for line in h.log_lines("weir")]
        assert "dead-letter topic refused a record" in events
    finally:
        h.cleanup()


async def test_after_a_refused_record_the_next_publish_goes_through(tmp_path: Path) -> None:
    """An idempotent producer whose record the broker refused gets every later record of that
    partition refused (out of sequence); DeadLetterTopic replaces it after a failure."""
    h = dlq_harness(tmp_path, dead_letters={"topic_retry_s": 0.01})
    settings = load_settings(h.config)
    target = settings.dead_letters.topic_for(h.topics["order"])
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(target, num_partitions=1, replication_factor=1,
                                            topic_configs={"max.message.bytes": "2048"})])
    finally:
        await admin.close()
    topic = DeadLetterTopic(settings)
    await topic.start()
    try:
        def dead(offset: int, size: int) -> DeadLetter:
            return DeadLetter(
                topic=h.topics["order"], partition=0, offset=offset, timestamp_ms=0,
                key=b"k", value=b"x" * size, headers=[], stage="decode", reason="too_large",
                error="big", event_type=None, chunk=Chunk((h.topics["order"], 0), 0, 1))

        assert await topic.publish([dead(1, 10)]) == [True]
        assert await topic.publish([dead(2, 5000)]) == [False]  # the broker refuses it
        # Refused for its own size: that says nothing of the topic, which stays in use.
        assert topic.available
        assert await topic.publish([dead(3, 10), dead(4, 10)]) == [True, True]
    finally:
        await topic.stop()
        await asyncio.to_thread(h.cleanup)


def committed_in_kafka(group: str) -> dict[tuple[str, int], int]:
    async def go() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
            return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        finally:
            await admin.close()
    return asyncio.run(go())


def next_offsets(acks: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """Per partition, the offset just past its last acknowledged record."""
    after: dict[tuple[str, int], int] = {}
    for a in acks:
        tp = (a["topic"], a["partition"])
        after[tp] = max(after.get(tp, 0), a["offset"] + 1)
    return after


def wait_for_commit(h: Harness, expected: dict[tuple[str, int], int], timeout: float,
                    alive: subprocess.Popen[bytes]) -> dict[tuple[str, int], int]:
    """Poll the group's committed offsets in Kafka until every partition of ``expected`` is
    committed exactly there; return them."""
    deadline = time.monotonic() + timeout
    committed: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        committed = committed_in_kafka(h.group)
        if {tp: committed.get(tp) for tp in expected} == expected:
            return committed
        assert alive.poll() is None, h.why_exited(alive)
        time.sleep(0.5)
    behind = {tp: (committed.get(tp), end) for tp, end in expected.items()
              if committed.get(tp) != end}
    raise AssertionError(f"Kafka's committed offsets did not reach the written events in "
                         f"{timeout}s; (committed, written) per partition: {behind}")


def spool_coords(h: Harness) -> list[Coords]:
    path = Path(h.tmp / "spool" / f"{h.group}.jsonl")
    if not path.exists():
        return []
    return [(e["topic"], e["partition"], e["offset"])
            for e in map(orjson.loads, path.read_bytes().splitlines()) if e]


@pytest.mark.parametrize("recovery", ["running", "killed_and_restarted"])
def test_dlq_topic_and_postgres_both_down_the_spool_keeps_them_until_one_returns(
    tmp_path: Path, private_pg: PrivatePostgres, recovery: str,
) -> None:
    """``running``: the periodic drain empties the spool once PostgreSQL is back.
    ``killed_and_restarted``: SIGKILL while the dead letters are only in the spool; the next
    process drains it at start and reads their (uncommitted) events again: still one dead
    letter per event."""
    h = dlq_harness(tmp_path, dsn=private_pg.dsn,
                    dead_letters={"spool_drain_interval_s": 1},
                    batch={"max_rows": 5000, "linger_ms": 1000},
                    postgres={"breaker_open_s": 1})
    h.migrate()
    try:
        delete_topics(dlq_topics(h))
        h.produce(500)
        weir = h.start("weir")
        h.wait_for(ROWS, 500, timeout=120, alive=[weir])
        # Kafka's committed offsets reach the written events before PostgreSQL goes: the
        # check below, that nothing is committed past a spooled event, is then about a
        # group that does commit, not one that never did.
        written = wait_for_commit(h, next_offsets(h.acks()), timeout=60, alive=weir)
        private_pg.halt()
        h.produce(3000, "--invalid-ratio", "0.05", "--seq-base", "100000")
        deadline = time.monotonic() + 120
        while not spool_coords(h) and time.monotonic() < deadline:
            assert weir.poll() is None, "weir exited while PostgreSQL was down"
            time.sleep(0.5)
        spooled = spool_coords(h)
        assert spooled, "no dead letter reached the spool"
        acks = h.acks()
        invalid = {(a["topic"], a["partition"], a["offset"]) for a in acks if "invalid" in a}
        assert set(spooled) <= invalid
        # Nothing committed past them: Kafka's committed offsets stay below every spooled one,
        # and at or past what was committed before (the commits went on, and went back on
        # no partition).
        committed = committed_in_kafka(h.group)
        for topic, partition, offset in spooled:
            assert written[(topic, partition)] <= committed[(topic, partition)] <= offset, (
                topic, partition)
        assert weir.poll() is None
        if recovery == "killed_and_restarted":
            weir.send_signal(signal.SIGKILL)
            weir.wait(10)
            private_pg.start()
            weir = h.start("weir-2")
        else:
            private_pg.start()
        h.wait_for(f"{ROWS} + (SELECT count(*) FROM weir_dead_letters)", len(acks),
                   timeout=240, alive=[weir])
        deadline = time.monotonic() + 60
        while spool_coords(h) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert spool_coords(h) == []  # drained into the table
        weir.send_signal(signal.SIGTERM)
        assert weir.wait(60) == 0
        assert set(table_dead_letters(h)) == invalid  # each once: the table's unique key
        valid_ids = [a["event_id"] for a in acks if "invalid" not in a]
        assert h.scalar(ROWS) == len(valid_ids)
        assert h.scalar("SELECT count(DISTINCT id) FROM (SELECT event_id::text AS id FROM "
                        "orders UNION ALL SELECT event_id::text FROM page_views) t "
                        "WHERE id = ANY($1::text[])", valid_ids) == len(valid_ids)
        events = [line.get("event", "") for line in h.log_lines("weir")]
        assert any("fall back to the spool" in e for e in events)
        if recovery == "killed_and_restarted":
            events = [line.get("event", "") for line in h.log_lines("weir-2")]
        assert "spool drained" in events
    finally:
        h.cleanup()


def test_dlq_commands_cover_the_topic_and_replay_from_it_exactly_once(tmp_path: Path) -> None:
    h = dlq_harness(tmp_path)
    h.migrate()
    try:
        h.sql("ALTER TABLE orders ADD CONSTRAINT amount_below_500 CHECK (amount < 500)")
        h.produce(2000, "--invalid-ratio", "0.03")
        weir = h.start("first", "--until-caught-up")
        assert weir.wait(180) == 0
        in_topic = read_dlq(h)
        assert in_topic
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0  # all in the topic
        refused = [c for c, copies in in_topic.items()
                   if copies[0][1]["weir-error-class"] == "rejected_by_table"]
        assert refused
        listed = h.weir("dlq", "list", "--limit", "10000")
        assert f"{len(in_topic)} dead letter(s)" in listed.stdout, listed.stderr
        topic, partition, offset = refused[0]
        shown = h.weir("dlq", "show", f"{topic}:{partition}@{offset}")
        assert shown.returncode == 0, shown.stderr
        assert "amount_below_500" in shown.stdout
        assert '"amount"' in shown.stdout  # the original value
        dry = h.weir("dlq", "replay", "--reason", "rejected_by_table", "--dry-run")
        assert f"would replay {len(refused)} dead letter(s)" in dry.stdout, dry.stderr
        h.sql("ALTER TABLE orders DROP CONSTRAINT amount_below_500")
        before = h.scalar("SELECT count(*) FROM orders")
        replayed = h.weir("dlq", "replay", "--reason", "rejected_by_table")
        assert f"replayed {len(refused)} dead letter(s)" in replayed.stdout, replayed.stderr
        again = h.weir("dlq", "replay", "--reason", "rejected_by_table")
        assert "replayed 0 dead letter(s)" in again.stdout  # PostgreSQL recorded the replay
        assert h.scalar("SELECT count(*) FROM weir_dead_letters WHERE replayed_at IS NOT NULL "
                        "AND reason = 'rejected_by_table'") == len(refused)
        second = h.start("second", "--until-caught-up")
        assert second.wait(180) == 0
        assert h.scalar("SELECT count(*) FROM orders") == before + len(refused)
    finally:
        h.cleanup()
