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
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Harness
from tests.integration.test_mapped_columns import publish

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


def harness(tmp_path: Path) -> Harness:
    schema = tmp_path / "customer.json"
    tmp_path.mkdir(parents=True, exist_ok=True)
    schema.write_text(orjson.dumps(CUSTOMER).decode())
    h = Harness(tmp_path, partitions=3)
    h.topics["customer"] = h.topics["order"].replace("orders", "src.public.customers")

    def add(config: dict[str, Any]) -> None:
        config["event_types"]["customer"] = {
            "schema_file": str(schema), "table": "customers", "envelope": "debezium",
            "write_mode": "upsert", "upsert_key": ["id"], "key_field": "id",
            "columns": [{"name": "updated_at", "path": "updated_us", "type": "timestamptz",
                         "time_unit": "microseconds"}]}
        config["topics"].append({"name": h.topics["customer"], "event_type": "customer"})
    h.rewrite(add)
    return h


def change(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
           embedded: bool) -> bytes:
    payload = {"before": before, "after": after, "op": op, "ts_ms": 1_764_064_800_000,
               "source": {"connector": "postgresql", "lsn": 1000, "table": "customers"}}
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
