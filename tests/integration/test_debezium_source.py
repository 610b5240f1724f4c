"""Mirrors of a real Debezium source: five tables of another database, captured by Debezium's
PostgreSQL connector 3.6.1.Final in Kafka Connect (4.3.2: see deploy/cdc/pom.xml), written by
Weir while it is SIGKILLed every few seconds.

The source is a PostgreSQL cluster of the test's own with logical decoding
(``tests/integration/cdc_source.py``). Each mirror's contract is written by ``weir
cdc-contract`` from its change events' schema. A random workload of 100,000 inserts,
updates, deletes and primary-key changes on five tables of varied column types (integer,
bigint, text, numeric, double, boolean, uuid, timestamptz, a timestamp sent as epoch
microseconds, a composite key), a column added to one table mid-run and another table
truncated (its mirror set to ``truncates: truncate``); one mirror keeps its deleted rows
(``deletes: soft``). Afterwards every mirror equals its source table (every row, every
mirrored column, by value; the soft-deleting mirror's live rows). Then the added column's
contract again, ``weir migrate`` and the documented backfill from ``raw``: the mirror equals
its source with the new column; and a replay of every change from the earliest offsets
keeps every mirror equal.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from processor.commands.produce.producer import ensure_topics
from processor.core.settings import load_settings
from tests.integration.cdc_source import (
    DebeziumSource,
    converge,
    differences,
    jars_missing,
    sigkilled_while,
)
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, email text, "
    "balance numeric(12,2), updated_at timestamptz)",
    "CREATE TABLE products (sku text PRIMARY KEY, title text, price double precision, "
    "active boolean NOT NULL DEFAULT true)",
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id integer, placed_at timestamp, "
    "total numeric(14,2), note text)",
    "CREATE TABLE devices (id uuid PRIMARY KEY, label text, seen bigint)",
    "CREATE TABLE memberships (team integer, member integer, role text, "
    "PRIMARY KEY (team, member))",
    # A row each before the capture starts: its snapshot carries each table's schema, from
    # which `weir cdc-contract` writes the mirror's contract.
    "INSERT INTO customers VALUES (1, 'first', NULL, 1.50, now())",
    "INSERT INTO products VALUES ('sku-000', 'first', 2.5, true)",
    "INSERT INTO orders VALUES (1, 1, '2026-12-01 10:00:00.123456', 10.00, NULL)",
    "INSERT INTO devices VALUES ('00000000-0000-0000-0000-000000000001', 'first', 1)",
    "INSERT INTO memberships VALUES (1, 1, 'lead')",
]
KEYS = {"customers": ["id"], "products": ["sku"], "orders": ["id"], "devices": ["id"],
        "memberships": ["team", "member"]}
# What each mirror is compared on, per table: the source's columns and the mirror's.
COMPARED = {
    "customers": ("id, name, email, balance, updated_at", "id, name, email, balance, updated_at"),
    "products": ("sku, title, price, active", "sku, title, price, active"),
    "orders": ("id, customer_id, placed_at, total, note", "id, customer_id, placed_at, total, "
               "note"),
    "devices": ("id, label, seen", "id, label, seen"),
    # Its mirror keeps deleted rows, marked: the live ones are the source's.
    "memberships": ("team, member, role", "team, member, role FROM memberships "
                    "WHERE deleted_at IS NULL"),
}
# Per mirror, what it sets beyond the defaults.
MIRRORED = {"products": {"truncates": "truncate"}, "memberships": {"deletes": "soft"}}


def harness(tmp_path: Path, source: DebeziumSource) -> Harness:
    """Five mirrors, their contracts still to write (``derive_contracts``)."""
    h = Harness(tmp_path, partitions=3)

    def add(config: dict[str, Any]) -> None:
        config["event_types"] = {}  # only the mirrors
        config["topics"] = []
        for table, key in KEYS.items():
            config["event_types"][table] = {
                "schema_file": str(tmp_path / f"{table}.json"), "table": table,
                "envelope": "debezium", "write_mode": "upsert", "upsert_key": key,
                "key_field": key[0] if len(key) == 1 else None, **MIRRORED.get(table, {})}
            config["topics"].append({"name": source.topic(table), "event_type": table})
    h.rewrite(add)
    return h


def derive_contract(h: Harness, source: DebeziumSource, table: str) -> dict[str, Any]:
    """``weir cdc-contract`` for one table's change topic, once its events are there."""
    path = h.tmp / f"{table}.json"
    deadline = time.monotonic() + 60
    while (done := h.weir("cdc-contract", "--topic", source.topic(table), "--out",
                          str(path))).returncode != 0:
        assert time.monotonic() < deadline, done.stderr[-2000:]
        time.sleep(1)
    contract: dict[str, Any] = orjson.loads(path.read_bytes())
    return contract


class Workload:
    """Random changes to the five tables, each in its own transaction."""

    def __init__(self, dsn: str, seed: int) -> None:
        self.dsn = dsn
        self.rand = random.Random(seed)
        self.done = 0
        self.skus = "sku"
        self.tiers = False  # customers have a tier column

    async def run(self, changes: int, alter_at: int, truncate_at: int) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            for i in range(changes):
                if i == alter_at:  # a column added at the source, mid-run
                    await conn.execute("ALTER TABLE customers ADD COLUMN tier text")
                    self.tiers = True
                if i == truncate_at:
                    await conn.execute("TRUNCATE products")
                    self.skus = "new"  # none of the earlier skus again
                await self.one(conn, i)
                self.done += 1
        finally:
            await conn.close()

    async def one(self, conn: asyncpg.Connection, i: int) -> None:
        r = self.rand
        table = r.choice(list(KEYS))
        kind = r.random()
        when = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(microseconds=r.randrange(10**12))
        if table == "customers":
            key = r.randrange(1, 300)
            if kind < 0.1:
                await conn.execute("DELETE FROM customers WHERE id = $1", key)
            elif kind < 0.13:  # a primary-key change
                await conn.execute("UPDATE customers SET id = id + 1000 WHERE id = $1 AND "
                                   "NOT EXISTS (SELECT 1 FROM customers WHERE id = $1 + 1000)",
                                   key)
            else:
                tier = (", tier", ", $6", ", tier = $6") if self.tiers else ("", "", "")
                await conn.execute(
                    f"INSERT INTO customers (id, name, email, balance, updated_at{tier[0]}) "
                    f"VALUES ($1, $2, $3, $4, $5{tier[1]}) ON CONFLICT (id) DO UPDATE SET "
                    f"name = $2, email = $3, balance = $4, updated_at = $5{tier[2]}", key,
                    f"n{i}", None if kind > 0.9 else f"c{key}@example.com",
                    Decimal(r.randrange(-10**8, 10**8)) / 100, when,
                    *((r.choice(["gold", "silver", None]),) if self.tiers else ()))
        elif table == "products":
            sku = f"{self.skus}-{r.randrange(200):03d}"
            if kind < 0.1:
                await conn.execute("DELETE FROM products WHERE sku = $1", sku)
            else:
                await conn.execute(
                    "INSERT INTO products VALUES ($1, $2, $3, $4) ON CONFLICT (sku) DO UPDATE "
                    "SET title = $2, price = $3, active = $4", sku, f"t{i}",
                    round(r.uniform(0, 500), 2), kind > 0.3)
        elif table == "orders":
            key = r.randrange(1, 10**12) if kind < 0.5 else r.randrange(1, 300)
            if kind < 0.05:
                await conn.execute("DELETE FROM orders WHERE id = $1", key)
            else:
                await conn.execute(
                    "INSERT INTO orders VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE "
                    "SET customer_id = $2, placed_at = $3, total = $4, note = $5", key,
                    r.randrange(1, 300), when.replace(tzinfo=None),
                    Decimal(r.randrange(10**9)) / 100, None if kind > 0.8 else "é\u2603")
        elif table == "devices":
            key = uuid.UUID(int=r.randrange(150))
            if kind < 0.1:
                await conn.execute("DELETE FROM devices WHERE id = $1", key)
            else:
                await conn.execute(
                    "INSERT INTO devices VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
                    "label = $2, seen = $3", key, f"d{i}", r.randrange(2**62))
        else:
            team, member = r.randrange(20), r.randrange(20)
            if kind < 0.15:
                await conn.execute("DELETE FROM memberships WHERE team = $1 AND member = $2",
                                   team, member)
            else:
                await conn.execute(
                    "INSERT INTO memberships VALUES ($1, $2, $3) ON CONFLICT (team, member) "
                    "DO UPDATE SET role = $3", team, member, r.choice(["lead", "dev", None]))


def test_mirrors_of_a_real_debezium_source_stay_equal_through_sigkills(
        tmp_path: Path) -> None:
    # make test fetches the jars (scripts/test-deps.sh): missing, this fails, never skips.
    assert jars_missing() is None, jars_missing()
    # A prefix of this run's own: another run's changes, in topics of the same name, would
    # be read too (and a new source cluster's log starts again at a low position).
    source = DebeziumSource(tmp_path, uuid.uuid4().hex[:10])
    asyncio.run(source.create(DDL))
    h = harness(tmp_path, source)
    h.topics.update({f"cdc {t}": source.topic(t) for t in KEYS})  # deleted at cleanup
    try:
        settings = load_settings(h.config)
        # A truncate has no key, so Debezium's producer may put it on any partition: its
        # table's change topic has one, as Debezium makes them (docs/cdc.md, Truncates).
        asyncio.run(ensure_topics(settings.model_copy(update={"topics": [
            t for t in settings.topics if t.event_type == "products"]}), 1))
        asyncio.run(ensure_topics(settings, 3))
        source.start()
        source.streaming()
        # Every mirror's shape from its change events' schema, Debezium's types mapped.
        contracts = {t: derive_contract(h, source, t) for t in KEYS}
        assert contracts["orders"]["properties"]["placed_at"]["format"] == "date-time"
        assert contracts["devices"]["properties"]["id"]["format"] == "uuid"
        assert contracts["products"]["required"] == ["sku", "active"]
        h.migrate()
        work = Workload(source.dsn, seed=4)
        changes = 100_000
        writer = threading.Thread(target=lambda: asyncio.run(
            work.run(changes, changes // 2, changes * 3 // 4)))
        writer.start()
        # Weir SIGKILLed every few seconds while the source changes.
        proc, kills = sigkilled_while(h, writer, at_least=4)
        assert work.done == changes
        assert kills >= 4
        converge(source, h, proc, COMPARED)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        rows = {t: h.scalar(f"SELECT count(*) FROM {t}") for t in KEYS}
        assert all(n > 50 for n in rows.values()), rows
        # The soft-deleting mirror kept deleted rows; the products' truncate emptied its
        # mirror (the skus before it are not written again after it).
        assert h.scalar("SELECT count(*) FROM memberships WHERE deleted_at IS NOT NULL") > 0
        assert h.scalar("SELECT count(*) FROM products WHERE sku LIKE 'sku-%'") == 0
        assert h.scalar("SELECT count(*) FROM products WHERE sku LIKE 'new-%'") > 50

        # The column added at the source: in each later row's raw; then the contract again
        # and weir migrate add it, the documented UPDATE fills it from raw for the rows
        # written before (docs/cdc.md, Types), and the mirrors are equal with it.
        assert h.scalar("SELECT count(*) FROM customers WHERE raw ? 'tier'") > 0
        tier = derive_contract(h, source, "customers")["properties"]["tier"]
        assert tier == {"type": ["string", "null"]}
        h.migrate()
        h.sql("UPDATE customers SET tier = raw->>'tier' WHERE raw ? 'tier'")
        with_tier = {**COMPARED, "customers": ("id, name, email, balance, updated_at, tier",
                                               "id, name, email, balance, updated_at, tier")}
        assert asyncio.run(differences(source, h, with_tier)) == dict.fromkeys(COMPARED, 0)
        assert h.scalar("SELECT count(*) FROM customers WHERE tier IS NOT NULL") > 0

        # Every change again from the earliest offsets: the mirrors stay equal.
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        again = h.weir("run", "--until-caught-up", timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert asyncio.run(differences(source, h, with_tier)) == dict.fromkeys(COMPARED, 0)
    finally:
        h.cleanup()
        source.drop()
