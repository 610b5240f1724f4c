"""Debezium change events into a mirror table, on the real Kafka and PostgreSQL.

Change events as Debezium's PostgreSQL connector writes them with the JSON converter (with
and without the embedded schema), keyed by the row's primary key: snapshot reads, creates,
updates, deletes with their tombstones, a primary-key change (a delete of the old key and a
create of the new one), a truncate and a malformed envelope. Afterwards the mirror equals a
model of the source table computed here from the same changes, every column; a replay of
every change from the earliest offsets keeps it equal; the malformed one is a dead letter.
Then 30,000 changes while one of two processes is SIGKILLed: the mirror is exact.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Harness
from tests.integration.servers import free_port
from tests.integration.test_mapped_columns import publish
from tests.integration.test_observability import eventually, get

pytestmark = pytest.mark.integration

CUSTOMER = {
    "type": "object", "required": ["id", "name"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                   "email": {"type": ["string", "null"]},
                   "updated_us": {"type": ["integer", "null"]}},
}
SCHEMA = {"type": "struct", "name": "src.public.customers.Envelope", "optional": False,
          "fields": [{"field": "before", "type": "struct", "optional": True},
                     {"field": "after", "type": "struct", "optional": True},
                     {"field": "op", "type": "string", "optional": False}]}
EPOCH_US = 1_764_064_800_000_000
SOURCE_MS = 1_764_064_800_000  # the changes' commit time at the source


def harness(tmp_path: Path, base: Harness | None = None, **mirror: Any) -> Harness:
    schema = tmp_path / "customer.json"
    tmp_path.mkdir(parents=True, exist_ok=True)
    schema.write_text(orjson.dumps(CUSTOMER).decode())
    h = base or Harness(tmp_path, partitions=3)
    h.topics["customer"] = h.topics["order"].replace("orders", "src.public.customers")

    def add(config: dict[str, Any]) -> None:
        config["event_types"]["customer"] = {
            "schema_file": str(schema), "table": "customers", "envelope": "debezium",
            "write_mode": "upsert", "upsert_key": ["id"], "key_field": "id",
            "truncates": "ignore",
            "columns": [{"name": "updated_at", "path": "updated_us", "type": "timestamptz",
                         "time_unit": "microseconds"}], **mirror}
        config["topics"].append({"name": h.topics["customer"], "event_type": "customer"})
    h.rewrite(add)
    return h


LSN = itertools.count(1000, 8)  # the source's log: every change further on


def change(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
           embedded: bool = False, lsn: int | None = None, ts_ms: int = SOURCE_MS) -> bytes:
    payload = {"before": before, "after": after, "op": op, "ts_ms": ts_ms + 40,
               "source": {"connector": "postgresql", "lsn": next(LSN) if lsn is None else lsn,
                          "ts_ms": ts_ms, "table": "customers"}}
    return orjson.dumps({"schema": SCHEMA, "payload": payload} if embedded else payload)


def workload(rand: random.Random, changes: int = 400, keys: int = 60
             ) -> tuple[list[bytes | None], list[bytes], dict[int, Any]]:
    """Changes of a customers table as Debezium writes them, and the table they leave."""
    table: dict[int, dict[str, Any]] = {}
    values: list[bytes | None] = []
    record_keys: list[bytes] = []

    def emit(key: int, value: bytes | None) -> None:
        record_keys.append(orjson.dumps({"id": key}))
        values.append(value)

    def row(key: int, version: int) -> dict[str, Any]:
        return {"id": key, "name": f"name-{key}-{version}",
                "email": None if version % 3 == 0 else f"c{key}@example.com",
                "updated_us": EPOCH_US + version * 1_000_123}

    for key in range(1, keys * 2 // 3 + 1):  # the snapshot
        table[key] = row(key, 0)
        emit(key, change("r", None, table[key], rand.random() < 0.5))
    for version in range(1, changes):
        key = rand.randrange(1, keys + 1)
        embedded = rand.random() < 0.5
        if key in table and rand.random() < 0.15:  # a delete, and its tombstone
            emit(key, change("d", table.pop(key), None, embedded))
            emit(key, None)
        elif key in table and rand.random() < 0.05:  # the primary key changes
            new = key + 1000
            old = table.pop(key)
            emit(key, change("d", old, None, embedded))
            emit(key, None)
            table[new] = {**old, "id": new}
            emit(new, change("c", None, table[new], embedded))
        else:
            op = "u" if key in table else "c"
            before = table.get(key)
            table[key] = row(key, version)
            emit(key, change(op, before, table[key], embedded))
    emit(0, change("t", None, None, False))  # a truncate: no row changes
    return values, record_keys, table


def mirror(h: Harness) -> dict[int, Any]:
    return {r["id"]: {"id": r["id"], "name": r["name"], "email": r["email"],
                      "updated_us": r["us"]} for r in h.sql(
        "SELECT id, name, email, (extract(epoch FROM updated_at) * 1000000)::bigint AS us "
        "FROM customers")}


def test_change_events_keep_a_mirror_equal_to_its_source(tmp_path: Path) -> None:
    h = harness(tmp_path)
    try:
        h.migrate()
        values, keys, table = workload(random.Random(3))
        # A malformed envelope among them: a dead letter, and the rest goes on.
        values.insert(100, orjson.dumps({"payload": {"op": "x", "after": {"id": 1}}}))
        keys.insert(100, b'{"id":1}')
        asyncio.run(publish(h, h.topics["customer"], values, keys))  # type: ignore[arg-type]
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        assert mirror(h) == table
        [letter] = h.sql("SELECT reason, error FROM weir_dead_letters")
        assert letter["reason"] == "envelope_error"
        assert "'op' is 'x', not one of c, r, u, d, t, m" in letter["error"]
        # The row is the source's row, not the envelope.
        raw = orjson.loads(h.scalar("SELECT raw FROM customers ORDER BY id LIMIT 1"))
        assert set(raw) == {"id", "name", "email", "updated_us"}

        # Every change again, from the earliest offsets: the mirror does not move.
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        again = h.weir("run", "--until-caught-up", timeout=240)
        assert again.returncode == 0, again.stderr[-3000:]
        assert mirror(h) == table
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 1
    finally:
        h.cleanup()


def test_the_mirror_is_exact_through_a_sigkill(tmp_path: Path) -> None:
    """30,000 changes while one of two processes is SIGKILLed mid-run: the mirror equals
    its source's model, every column."""
    h = harness(tmp_path)
    try:
        h.migrate()
        values, keys, table = workload(random.Random(8), changes=30_000, keys=2_000)
        sent = threading.Thread(target=lambda: asyncio.run(publish(
            h, h.topics["customer"], values, keys)))  # type: ignore[arg-type]
        sent.start()
        a, b = h.start("a"), h.start("b")
        h.wait_for("SELECT count(*) > 800 FROM customers", True, timeout=180, alive=[a, b])
        b.send_signal(signal.SIGKILL)
        assert b.wait(10) == -signal.SIGKILL
        b2 = h.start("b2")
        sent.join(timeout=240)
        assert not sent.is_alive()
        deadline = time.monotonic() + 240
        while mirror(h) != table:
            assert time.monotonic() < deadline, "the mirror did not settle on its source"
            for proc in (a, b2):
                assert proc.poll() is None, h.why_exited(proc)
            time.sleep(1)
        for proc in (a, b2):
            proc.send_signal(signal.SIGTERM)
        assert (a.wait(60), b2.wait(60)) == (0, 0)
        assert mirror(h) == table
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    finally:
        h.cleanup()


def customer(key: int, name: str) -> dict[str, Any]:
    return {"id": key, "name": name, "email": None, "updated_us": EPOCH_US}


def send(h: Harness, changes: list[tuple[int, bytes | None]]) -> None:
    """Changes on one partition each (by key), in this order."""
    values = [v for _, v in changes]
    keys = [orjson.dumps({"id": k}) for k, _ in changes]
    asyncio.run(publish(h, h.topics["customer"], values, keys))  # type: ignore[arg-type]


def caught_up(h: Harness) -> None:
    done = h.weir("run", "--until-caught-up", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def rows(h: Harness) -> dict[int, tuple[Any, ...]]:
    """Each row's name, source position, and deletion time (ms; None: not deleted)."""
    soft = h.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                    "'customers' AND column_name = 'deleted_at'")
    deleted = "(extract(epoch FROM deleted_at) * 1000)::bigint" if soft else "NULL::bigint"
    return {r["id"]: (r["name"], r["source_position"], r["deleted"]) for r in h.sql(
        f"SELECT id, name, source_position, {deleted} AS deleted FROM customers")}


def waits_on_truncate(base: str) -> bool:
    status, body = get(f"{base}/readyz")
    return status == 503 and isinstance(body, dict) and any(
        "was truncated" in str(check.get("error", "")) for check in body["checks"].values())


def test_the_source_position_orders_a_rows_changes_whatever_kafka_did(tmp_path: Path) -> None:
    """A change older in the source's log than the stored row changes nothing, though it
    comes later in Kafka (a topic recreated, a change sent again): an update, a delete."""
    h = harness(tmp_path)
    try:
        h.migrate()
        send(h, [(1, change("c", None, customer(1, "new"), lsn=500)),
                 (2, change("c", None, customer(2, "kept"), lsn=510))])
        caught_up(h)
        send(h, [(1, change("u", None, customer(1, "old"), lsn=400)),
                 (2, change("d", customer(2, "kept"), None, lsn=300)), (2, None),
                 (3, change("c", None, customer(3, "a"), lsn=600)),
                 (3, change("u", None, customer(3, "b"), lsn=590))])  # older, in one batch
        caught_up(h)
        assert rows(h) == {1: ("new", 500, None), 2: ("kept", 510, None), 3: ("a", 600, None)}
        # The event time is the commit at the source.
        assert h.scalar("SELECT min(extract(epoch FROM event_time) * 1000)::bigint "
                        "FROM customers") == SOURCE_MS
        # A newer delete does delete.
        send(h, [(2, change("d", customer(2, "kept"), None, lsn=700)), (2, None)])
        caught_up(h)
        assert set(rows(h)) == {1, 3}
    finally:
        h.cleanup()


def test_soft_deletes_keep_the_row_marked_and_no_older_change_revives_it(
        tmp_path: Path) -> None:
    h = harness(tmp_path, deletes="soft")
    try:
        h.migrate()
        deleted_ms = SOURCE_MS + 5_000
        send(h, [(1, change("c", None, customer(1, "a"), lsn=100)),  # both in one batch
                 (1, change("d", customer(1, "a"), None, lsn=110, ts_ms=deleted_ms)),
                 (1, None),
                 (2, change("c", None, customer(2, "b"), lsn=120))])
        caught_up(h)
        assert rows(h) == {1: ("a", 110, deleted_ms), 2: ("b", 120, None)}
        # An older change sent again keeps it deleted; a newer create brings it back.
        send(h, [(1, change("u", None, customer(1, "stale"), lsn=105))])
        caught_up(h)
        assert rows(h)[1] == ("a", 110, deleted_ms)
        send(h, [(1, change("c", None, customer(1, "again"), lsn=130))])
        caught_up(h)
        assert rows(h)[1] == ("again", 130, None)
        # A replay of everything ends the same.
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        caught_up(h)
        assert rows(h) == {1: ("again", 130, None), 2: ("b", 120, None)}
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    finally:
        h.cleanup()


@pytest.mark.parametrize("deletes", ["delete", "soft"])
def test_a_truncate_empties_the_mirror_up_to_its_position(tmp_path: Path,
                                                           deletes: str) -> None:
    """Rows of earlier changes go (or are marked deleted), those after the truncate stay,
    in one batch or over several, and a replay ends the same. On one partition, as
    Debezium's change topics are: on several, an older change of another partition read
    after the truncate comes back (docs/cdc.md, Truncates; a clean-clone run met it)."""
    h = harness(tmp_path, Harness(tmp_path, partitions=1), truncates="truncate",
                deletes=deletes)
    try:
        h.migrate()
        send(h, [(k, change("c", None, customer(k, f"n{k}"), lsn=100 + k)) for k in (1, 2)])
        caught_up(h)
        truncated_ms = SOURCE_MS + 9_000
        send(h, [(3, change("c", None, customer(3, "n3"), lsn=103)),
                 (0, change("t", None, None, lsn=200, ts_ms=truncated_ms)),
                 (4, change("c", None, customer(4, "n4"), lsn=300))])
        caught_up(h)
        expected = {4: ("n4", 300, None)} if deletes == "delete" else {
            1: ("n1", 200, truncated_ms), 2: ("n2", 200, truncated_ms),
            3: ("n3", 200, truncated_ms), 4: ("n4", 300, None)}
        assert rows(h) == expected
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        caught_up(h)
        assert rows(h) == expected
    finally:
        h.cleanup()


def test_a_truncate_stalls_the_mirror_until_an_operator_chooses(tmp_path: Path) -> None:
    """With truncates: stall (the default) the batch that holds the truncate waits,
    uncommitted, and /readyz says why; set to ignore and restarted, Weir goes on."""
    port = free_port()
    h = harness(tmp_path, Harness(tmp_path, partitions=1, metrics={
        "enabled": True, "port": port, "lag_interval_s": 0.5}, postgres={
        "stall_retry_max_s": 2.0}), truncates="stall")
    base = f"http://127.0.0.1:{port}"
    try:
        h.migrate()
        send(h, [(1, change("c", None, customer(1, "a"), lsn=100)),
                 (0, change("t", None, None, lsn=200)),
                 (2, change("c", None, customer(2, "b"), lsn=300))])
        weir = h.start("stalled")
        try:
            eventually(lambda: waits_on_truncate(base), 60,
                       "/readyz saying the mirror waits on a truncate")
            # Nothing past it commits (what came before it may have, in an earlier batch).
            assert h.scalar("SELECT count(*) FROM customers WHERE id = 2") == 0
            # The operator stops it any way at all: the stalled batch was never committed.
            weir.send_signal(signal.SIGKILL)
            weir.wait(60)
            written_before = h.scalar("SELECT count(*) FROM customers")
        finally:
            if weir.poll() is None:
                weir.kill()

        def ignore(config: dict[str, Any]) -> None:
            config["event_types"]["customer"]["truncates"] = "ignore"
        h.rewrite(ignore)
        weir = h.start("ignoring")
        try:
            h.wait_for("SELECT count(*) FROM customers", 2, timeout=60, alive=[weir])
            _, text = get(f"{base}/metrics")
            lag = [line for line in str(text).splitlines()
                   if line.startswith('weir_mirror_lag_seconds{event_type="customer"}')]
            assert lag
            assert float(lag[0].split()[-1]) > 0
            [shown] = get(f"{base}/status.json")[1]["mirrors"]  # the status page's table
            assert (shown["event_type"], shown["changes"]) == ("customer", 2 - written_before)
            assert shown["lag_seconds"] > 0
            weir.send_signal(signal.SIGTERM)
            assert weir.wait(60) == 0
        finally:
            if weir.poll() is None:
                weir.kill()
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    finally:
        h.cleanup()
