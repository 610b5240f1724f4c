"""Every dead letter is kept whole: binary headers, header keys with NUL, keys of any bytes
and error messages that quote a NUL land in the table (not the spool), the spool drains them
into it, and `weir dlq replay` republishes key, value and headers byte for byte.

Real Kafka and PostgreSQL (the shared stack; each test has its own schema and topics).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.records import Chunk, DeadLetter, Header
from processor.core.settings import load_settings
from processor.deadletter.places import Places
from processor.deadletter.spool import Spool
from processor.deadletter.stored import decode_headers, safe_text
from processor.deadletter.table import DeadLetterTable
from processor.sink.pool import create_pool
from tests.integration.conftest import KAFKA, ROWS, Harness
from tests.integration.servers import PrivatePostgres
from tests.integration.test_dead_letter_places import _read_dlq, dlq_harness

Coords = tuple[str, int, int]

NASTY_HEADERS: list[Header] = [
    ("trace-bin", b"\x00\xff\x01"),
    ("k\x00ey \u2603 \t|\"'\\", b"\xff\xfe"),
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("empty", b""),
    ("trace-bin", b"second copy, same key"),  # Kafka allows repeated keys; order matters
]
NASTY_KEY = b"\x00\xff\xfe\x80 key"

# A transform that refuses flagged events with a NUL in its message. (A NUL escape in the
# event itself never reaches a transform: the raw jsonb column cannot hold it, so the
# decoder refuses it first, as a conversion_error.)
TRANSFORM = '''
def refuse_flagged(event):
    if "flag" in event:
        raise ValueError("flagged " + event["flag"].replace("-", "\\x00"))
    return event
'''


def nasty_harness(tmp_path: Path, **overrides: Any) -> Harness:
    (tmp_path / "nasty_transform.py").write_text(TRANSFORM)
    transforms = ["processor.transform.examples:normalize_currency",
                  "nasty_transform:refuse_flagged"]
    return Harness(tmp_path, env={"PYTHONPATH": str(tmp_path)},
                   event_types={"order": {"transforms": transforms}}, **overrides)


def nasty_records(seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value): not JSON at all, and a valid order whose transform refuses it."""
    sample = SampleEvents(seed=seed)
    _, event = sample.make("order")
    event["flag"] = "a-b"
    return [(NASTY_KEY, b"\x00\x01\x02 not json {"), (NASTY_KEY + b"2", orjson.dumps(event))]


async def _produce(h: Harness, topic: str, records: list[tuple[bytes, bytes]]) -> list[Coords]:
    await ensure_topics(load_settings(h.config), 6)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    try:
        coords = []
        for key, value in records:
            meta = await producer.send_and_wait(topic, value, key=key,
                                                headers=list(NASTY_HEADERS))
            coords.append((meta.topic, meta.partition, meta.offset))
        return coords
    finally:
        await producer.stop()


def replayed_copies(topic: str) -> dict[str, Any]:
    """The records of ``topic`` that `weir dlq replay` published, by their origin."""
    records = asyncio.run(_read_dlq([topic]))  # reads every partition to its end
    return {dict(r.headers)["weir-replay-of"].decode(): r for r in records
            if "weir-replay-of" in dict(r.headers)}


def assert_exact_replays(topic: str, sent: dict[Coords, tuple[bytes, bytes]]) -> None:
    copies = replayed_copies(topic)
    assert len(copies) == len(sent)
    for (t, partition, offset), (key, value) in sent.items():
        copy = copies[f"{t}/{partition}/{offset}"]
        assert copy.key == key
        assert copy.value == value
        assert [(k, v) for k, v in copy.headers if k != "weir-replay-of"] == NASTY_HEADERS


def test_nasty_dead_letters_land_in_the_table_and_replay_byte_for_byte(
    tmp_path: Path,
) -> None:
    h = nasty_harness(tmp_path)
    h.migrate()
    try:
        records = nasty_records(seed=21)
        coords = asyncio.run(_produce(h, h.topics["order"], records))
        weir = h.start("weir", "--until-caught-up")
        assert weir.wait(180) == 0, h.why_exited(weir)
        rows = h.sql('SELECT id, topic, partition, "offset", key, value, headers, '
                     "headers_format, reason, error FROM weir_dead_letters ORDER BY id")
        assert [(r["topic"], r["partition"], r["offset"]) for r in rows] == coords
        assert not Spool(tmp_path / "spool", h.group).peek()  # the table took them
        for row, (key, value) in zip(rows, records, strict=True):
            assert (row["key"], row["value"], row["headers_format"]) == (key, value, 2)
            assert decode_headers(row["headers"]) == NASTY_HEADERS
        assert [r["reason"] for r in rows] == ["decode_error", "transform_error"]
        assert "flagged a\\x00b" in rows[1]["error"]
        # Ordinary text headers stay readable in SQL.
        assert h.scalar("SELECT headers->2->>1 FROM weir_dead_letters WHERE id = $1",
                        rows[0]["id"]) == NASTY_HEADERS[2][1].decode()  # type: ignore[union-attr]
        listed = h.weir("dlq", "list")
        assert "2 dead letter(s)" in listed.stdout, listed.stderr
        shown = h.weir("dlq", "show", str(rows[0]["id"]))
        assert shown.returncode == 0, shown.stderr
        assert "b'\\x00\\xff\\x01'" in shown.stdout  # the exact header bytes
        assert "key: \\x00\\xff\\xfe\\x80 key\n" in shown.stdout  # escaped, not raw
        replayed = h.weir("dlq", "replay")
        assert "replayed 2 dead letter(s)" in replayed.stdout, replayed.stderr
        assert_exact_replays(h.topics["order"], dict(zip(coords, records, strict=True)))
    finally:
        h.cleanup()


def test_replay_from_the_dead_letter_topic_republishes_exact_bytes(tmp_path: Path) -> None:
    h = dlq_harness(tmp_path)
    h.migrate()
    try:
        records = nasty_records(seed=22)[:1]
        coords = asyncio.run(_produce(h, h.topics["order"], records))
        weir = h.start("weir", "--until-caught-up")
        assert weir.wait(180) == 0, h.why_exited(weir)
        dlq = asyncio.run(_read_dlq([f"{h.topics['order']}.dlq"]))
        assert len(dlq) == 1
        assert dlq[0].key == NASTY_KEY
        original = [(k, v) for k, v in dlq[0].headers if not k.startswith("weir-")]
        assert original == NASTY_HEADERS
        assert dict(dlq[0].headers)["weir-source-offset"] == str(coords[0][2]).encode()
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        replayed = h.weir("dlq", "replay")
        assert "replayed 1 dead letter(s)" in replayed.stdout, replayed.stderr
        assert_exact_replays(h.topics["order"], dict(zip(coords, records, strict=True)))
    finally:
        h.cleanup()


def spooled(offset: int, topic: str) -> DeadLetter:
    return DeadLetter(
        topic=topic, partition=0, offset=offset, timestamp_ms=1_700_000_000_000,
        key=NASTY_KEY, value=b"\x00 not json", headers=list(NASTY_HEADERS), stage="transform",
        reason="transform_error", error="ValueError: flagged a\x00b \udcff",
        event_type="order", chunk=Chunk((topic, 0), offset, offset + 1),
    )


async def test_a_spooled_dead_letter_is_listed_then_drained_into_the_table_exact(
    tmp_path: Path,
) -> None:
    h = nasty_harness(tmp_path)
    await asyncio.to_thread(h.migrate)
    settings = load_settings(h.config)
    pool = await create_pool(settings, [])
    try:
        places = Places(None, DeadLetterTable(settings), pool,
                        Spool(settings.dead_letters.spool_dir, h.group), 10)
        dead = spooled(7, h.topics["order"])
        await places.to_spool([dead], ConnectionError("PostgreSQL went away"))
        where = f"{dead.topic}:{dead.partition}@{dead.offset}"
        listed = await asyncio.to_thread(h.weir, "dlq", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [row] = orjson.loads(listed.stdout)
        assert (row["place"], row["path"], row["offset"]) == ("spool", str(places.spool.path), 7)
        shown = await asyncio.to_thread(h.weir, "dlq", "show", where)
        assert "place: spool" in shown.stdout, shown.stderr
        # PostgreSQL refuses (here: the table is away) and the spool keeps it.
        await asyncio.to_thread(h.sql, "ALTER TABLE weir_dead_letters RENAME TO away")
        assert await places.drain() == 0
        assert [e.dead.offset for e in places.spool.peek()] == [7]
        await asyncio.to_thread(h.sql, "ALTER TABLE away RENAME TO weir_dead_letters")
        assert await places.drain() == 1
        assert places.spool.peek() == []
        [stored] = await asyncio.to_thread(
            h.sql, "SELECT key, value, headers, headers_format, error FROM weir_dead_letters")
        assert (stored["key"], stored["value"], stored["headers_format"]) == (
            NASTY_KEY, dead.value, 2)
        assert decode_headers(stored["headers"]) == NASTY_HEADERS
        assert stored["error"] == "ValueError: flagged a\\x00b \\udcff"
        listed = await asyncio.to_thread(h.weir, "dlq", "list", "--json")
        assert [r["place"] for r in orjson.loads(listed.stdout)] == ["table"]
    finally:
        await pool.close()
        await asyncio.to_thread(h.cleanup)


def test_migrate_upgrades_a_table_of_the_earlier_version_keeping_its_rows(
    tmp_path: Path,
) -> None:
    h = nasty_harness(tmp_path)
    h.migrate()
    try:
        # The table as the earlier version made it, with one of its rows (text headers).
        h.sql("ALTER TABLE weir_dead_letters DROP COLUMN headers_format")
        h.sql("INSERT INTO weir_dead_letters (consumer_group, topic, partition, \"offset\", "
              "key, value, headers, stage, reason, error) VALUES ($1, $2, 0, 3, $3, $4, "
              "$5::text::jsonb, 'decode', 'decode_error', 'not JSON')", h.group,
              h.topics["order"], b"k", b"\xff", '[["trace", "caf\ufffd"], ["id", "abc"]]')
        refused = h.weir("run", "--until-caught-up")
        assert refused.returncode == 1
        assert "headers_format" in refused.stderr
        h.migrate()
        [row] = h.sql("SELECT key, value, headers, headers_format FROM weir_dead_letters")
        assert (row["key"], row["value"], row["headers_format"]) == (b"k", b"\xff", 1)
        assert decode_headers(row["headers"]) == [("trace", "caf\ufffd".encode()),
                                                  ("id", b"abc")]
        shown = h.weir("dlq", "show", f"{h.topics['order']}:0@3")
        assert "headers_format: 1" in shown.stdout, shown.stderr
        asyncio.run(ensure_topics(load_settings(h.config), 6))
        replayed = h.weir("dlq", "replay")
        assert "replayed 1 dead letter(s)" in replayed.stdout, replayed.stderr
        [copy] = replayed_copies(h.topics["order"]).values()
        assert list(copy.headers[:2]) == [("trace", "caf\ufffd".encode()), ("id", b"abc")]
    finally:
        h.cleanup()


any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
header_values = st.none() | st.binary(max_size=30) | any_text.map(
    lambda s: s.encode("utf-8", "surrogatepass"))
nasty_dead_letters = st.builds(
    lambda key, value, headers, error, event_type: (key, value, headers, error, event_type),
    st.none() | st.binary(max_size=30), st.none() | st.binary(max_size=60),
    st.lists(st.tuples(any_text, header_values), max_size=6), any_text,
    st.none() | any_text,
)


def test_any_dead_letter_is_insertable_and_reads_back_exact(tmp_path: Path) -> None:
    """Hypothesis against the real server: whatever the bytes and messages, the table takes
    the dead letter, and key, value and headers come back byte for byte."""
    h = nasty_harness(tmp_path)
    h.migrate()
    settings = load_settings(h.config)
    offsets = iter(range(10**9))
    try:
        with asyncio.Runner() as runner:
            pool = runner.run(create_pool(settings, []))
            table = DeadLetterTable(settings)

            @hyp_settings(max_examples=150, deadline=None)
            @given(nasty_dead_letters)
            def check(case: tuple[Any, ...]) -> None:
                key, value, headers, error, event_type = case
                d = spooled(next(offsets), h.topics["order"])
                d.key, d.value, d.headers, d.error, d.event_type = (
                    key, value, headers, error, event_type)
                runner.run(table.write_alone(pool, [d], 10.0))
                row = runner.run(pool.fetchrow(
                    f'SELECT key, value, headers, error FROM {h.schema}.weir_dead_letters '
                    'WHERE "offset" = $1', d.offset))
                assert (row["key"], row["value"]) == (key, value)
                assert decode_headers(row["headers"]) == headers
                assert row["error"] == safe_text(error)

            try:
                check()
                assert runner.run(pool.fetchval(
                    f"SELECT count(*) FROM {h.schema}.weir_dead_letters")) >= 100
            finally:
                runner.run(pool.close())
    finally:
        h.cleanup()


def test_postgres_away_the_nasty_dead_letter_waits_in_the_spool_listed_then_drains_exact(
    tmp_path: Path, private_pg: PrivatePostgres,
) -> None:
    """A running Weir, PostgreSQL stopped: the dead letter with binary headers is spooled,
    `weir dlq list | show` show it from the spool (PostgreSQL away: exit 1, partial), and
    once PostgreSQL is back the drain puts it in the table with its bytes intact."""
    h = nasty_harness(tmp_path, dsn=private_pg.dsn, dead_letters={"spool_drain_interval_s": 1},
                      postgres={"breaker_open_s": 1}, batch={"linger_ms": 200})
    h.migrate()
    spool = Spool(tmp_path / "spool", h.group)
    try:
        h.produce(100)
        weir = h.start("weir")
        h.wait_for(ROWS, 100, timeout=120, alive=[weir])
        private_pg.halt()
        records = nasty_records(seed=23)[:1]
        [coords] = asyncio.run(_produce(h, h.topics["order"], records))
        deadline = time.monotonic() + 120
        while not spool.peek() and time.monotonic() < deadline:
            assert weir.poll() is None, h.why_exited(weir)
            time.sleep(0.5)
        [entry] = spool.peek()
        assert (entry.dead.key, entry.dead.headers) == (NASTY_KEY, NASTY_HEADERS)
        listed = h.weir("dlq", "list", "--json")
        assert listed.returncode == 1  # partial: the table could not be read
        assert "PostgreSQL did not answer" in listed.stderr
        [row] = orjson.loads(listed.stdout)
        assert (row["place"], row["offset"], row["path"]) == ("spool", coords[2],
                                                              str(spool.path))
        shown = h.weir("dlq", "show", f"{coords[0]}:{coords[1]}@{coords[2]}")
        assert shown.returncode == 0, shown.stderr
        assert "place: spool" in shown.stdout
        assert "b'\\x00\\xff\\x01'" in shown.stdout
        private_pg.start()
        h.wait_for("SELECT count(*) FROM weir_dead_letters", 1, timeout=120, alive=[weir])
        [stored] = h.sql('SELECT topic, partition, "offset", key, value, headers, '
                         "headers_format FROM weir_dead_letters")
        assert (stored["topic"], stored["partition"], stored["offset"]) == coords
        assert (stored["key"], stored["value"], stored["headers_format"]) == (*records[0], 2)
        assert decode_headers(stored["headers"]) == NASTY_HEADERS
        deadline = time.monotonic() + 30
        while spool.peek() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert spool.peek() == []
        weir.send_signal(signal.SIGTERM)
        assert weir.wait(60) == 0
    finally:
        h.cleanup()
