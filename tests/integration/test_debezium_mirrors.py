"""Many tables, one entry: ``cdc.mirrors`` against a real Debezium source.

One pattern names every change topic of the source. Weir finds the topics, derives each
mirror from its change events (its columns from their schema, its key from their record
key), creates the tables itself, and keeps them equal to the source while it is SIGKILLed
every few seconds and the source changes under it: a table created mid-run is picked up
without a restart by hand, and a column added mid-run reaches its mirror before any row
that has a value for it is written (no backfill). A table without a primary key is not
mirrored, and ``weir cdc-mirrors`` says why. The same with Avro change events through the
registry, whose mirrors take their shape from each topic's registered envelope.
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

from tests.integration.cdc_source import (
    DebeziumSource,
    converge,
    differences,
    jars_missing,
    sigkilled_while,
)
from tests.integration.conftest import REGISTRY, Harness
from tests.integration.servers import free_port
from tests.integration.test_observability import eventually, get

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, "
    "balance numeric(12,2), updated_at timestamptz)",
    "CREATE TABLE memberships (team integer, member integer, role text, "
    "PRIMARY KEY (team, member))",
    "CREATE TABLE audit (note text)",  # no primary key: not mirrored
    "INSERT INTO customers VALUES (1, 'first', 1.50, now())",
    "INSERT INTO memberships VALUES (1, 1, 'lead')",
    "INSERT INTO audit VALUES ('first')",
]
LATER = "CREATE TABLE shipments (id bigint PRIMARY KEY, status text, shipped_at timestamptz)"
COMPARED = {
    "customers": ("id, name, balance, updated_at, tier", "id, name, balance, updated_at, tier"),
    "memberships": ("team, member, role", "team, member, role"),
    "shipments": ("id, status, shipped_at", "id, status, shipped_at"),
}


class Workload:
    """Random changes; a table created and a column added on the way."""

    def __init__(self, dsn: str, seed: int) -> None:
        self.dsn = dsn
        self.rand = random.Random(seed)
        self.done = 0
        self.tables = ["customers", "memberships", "audit"]
        self.tier = False

    async def run(self, changes: int, create_at: int, alter_at: int) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            for i in range(changes):
                if i == create_at:
                    await conn.execute(LATER)
                    self.tables.append("shipments")
                if i == alter_at:
                    await conn.execute("ALTER TABLE customers ADD COLUMN tier text")
                    self.tier = True
                await self.one(conn, i)
                self.done += 1
        finally:
            await conn.close()

    async def one(self, conn: asyncpg.Connection, i: int) -> None:
        r = self.rand
        table = r.choice(self.tables)
        kind = r.random()
        when = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(microseconds=r.randrange(10**12))
        if table == "customers":
            key = r.randrange(1, 200)
            if kind < 0.1:
                await conn.execute("DELETE FROM customers WHERE id = $1", key)
                return
            tier = (", tier", ", $5", ", tier = $5") if self.tier else ("", "", "")
            await conn.execute(
                f"INSERT INTO customers (id, name, balance, updated_at{tier[0]}) VALUES "
                f"($1, $2, $3, $4{tier[1]}) ON CONFLICT (id) DO UPDATE SET name = $2, "
                f"balance = $3, updated_at = $4{tier[2]}", key, f"n{i}",
                Decimal(r.randrange(-10**8, 10**8)) / 100, when,
                *((r.choice(["gold", "silver", None]),) if self.tier else ()))
        elif table == "memberships":
            team, member = r.randrange(15), r.randrange(15)
            if kind < 0.15:
                await conn.execute("DELETE FROM memberships WHERE team = $1 AND member = $2",
                                   team, member)
            else:
                await conn.execute(
                    "INSERT INTO memberships VALUES ($1, $2, $3) ON CONFLICT (team, member) "
                    "DO UPDATE SET role = $3", team, member, r.choice(["lead", "dev", None]))
        elif table == "shipments":
            key = r.randrange(1, 300)
            if kind < 0.1:
                await conn.execute("DELETE FROM shipments WHERE id = $1", key)
            else:
                await conn.execute(
                    "INSERT INTO shipments VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE "
                    "SET status = $2, shipped_at = $3", key, r.choice(["packed", "sent"]),
                    when)
        else:  # without a primary key it publishes inserts only
            await conn.execute("INSERT INTO audit VALUES ($1)", f"a{i}")


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_one_pattern_mirrors_every_table_and_follows_new_tables_and_columns(
        tmp_path: Path, fmt: str) -> None:
    """``fmt``: the JSON converter with its embedded schema, or Avro keys and values through
    the registry (Apicurio's converter, Confluent's framing; decimals exact)."""
    assert jars_missing() is None, jars_missing()
    source = DebeziumSource(tmp_path, uuid.uuid4().hex[:10])
    asyncio.run(source.create(DDL))
    port = free_port()
    avro = fmt == "avro"
    h = Harness(tmp_path, partitions=3, metrics={"enabled": True, "port": port},
                cdc={"refresh_s": 2.0,
                     "mirrors": [{"topics": source.prefix + r"\.public\..+",
                                  "table": "{table}", "format": fmt}]},
                **({"schema_registry": {"url": REGISTRY}} if avro else {}))

    def only_mirrors(config: dict[str, Any]) -> None:
        config["event_types"] = {}
        config["topics"] = []
    h.rewrite(only_mirrors)
    h.topics.update({f"cdc {t}": source.topic(t)
                     for t in ("customers", "memberships", "audit", "shipments", "returns")})
    try:
        # FOR ALL TABLES: a table created later is captured too.
        source.start(publication="all_tables", partitions=3, avro=avro, avro_keys=avro)
        source.streaming()
        work = Workload(source.dsn, seed=7)
        changes = 50_000
        writer = threading.Thread(target=lambda: asyncio.run(
            work.run(changes, changes // 3, changes * 2 // 3)))
        writer.start()
        proc, kills = sigkilled_while(h, writer)
        assert work.done == changes
        assert kills >= 3
        converge(source, h, proc, COMPARED)
        # The same process, with no kill now: a table created and a column added are
        # followed by the running Weir itself (its watch, and a held change).
        compared = {**COMPARED, "returns": ("id, reason", "id, reason")}
        for step in LATER_CHANGES:
            asyncio.run(at_source(source.dsn, step))
            if "vip" in step[-1]:
                compared["customers"] = (COMPARED["customers"][0] + ", vip",
                                         COMPARED["customers"][1] + ", vip")
            converge(source, h, proc, compared, timeout=120)
        restarts = [line["reason"] for line in h.log_lines(f"w{kills}")
                    if line.get("event") == "stopping to start again"]
        assert f"new change topics to mirror: {source.topic('returns')}" in restarts, restarts
        assert "new columns in customers: vip" in restarts, restarts
        # Every mirror equals its source, the added columns with it: no row was written
        # without a value its source holds.
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        assert h.scalar("SELECT count(*) FROM customers WHERE vip") > 0
        assert h.scalar("SELECT count(*) FROM customers WHERE tier IS NOT NULL") > 0
        assert h.scalar("SELECT count(*) FROM shipments") > 50
        assert h.scalar("SELECT count(*) FROM information_schema.tables WHERE "
                        "table_schema = $1 AND table_name = 'audit'", h.schema) == 0
        _, text = get(f"http://127.0.0.1:{port}/metrics")
        assert 'weir_mirror_topics{state="mirrored"} 4.0' in str(text)
        assert 'weir_mirror_topics{state="waiting"} 1.0' in str(text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0

        # What the pattern makes of the topics, and why the one without a key is left.
        shown = h.weir("cdc-mirrors", "--json")
        assert shown.returncode == 0, shown.stderr
        rows = {r["topic"]: r for r in orjson.loads(shown.stdout)}
        assert rows[source.topic("memberships")]["key"] == ["team", "member"]
        # JSON's decimals as doubles (decimal.handling.mode=double), Avro's exact.
        assert rows[source.topic("customers")]["columns"]["balance"] == (
            "numeric" if avro else "double precision")
        assert rows[source.topic("shipments")]["columns"]["shipped_at"] == "timestamptz"
        audit = rows[source.topic("audit")]
        assert audit["state"] == "waiting", audit
        assert "no primary key" in audit["why"], audit

        # Every change again from the earliest offsets, on every mirrored topic.
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        again = h.weir("run", "--until-caught-up", timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert asyncio.run(differences(source, h, compared)) == dict.fromkeys(compared, 0)
    finally:
        h.cleanup()
        source.drop()


# After the kills, one at a time: a table created, then a column added and set.
LATER_CHANGES = [
    ["CREATE TABLE returns (id integer PRIMARY KEY, reason text)",
     "INSERT INTO returns SELECT i, 'r' || i FROM generate_series(1, 100) i"],
    ["ALTER TABLE customers ADD COLUMN vip boolean",
     "UPDATE customers SET vip = (id % 3 = 0)"],
]


async def at_source(dsn: str, statements: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def test_a_mirror_whose_column_changes_type_is_refused_and_the_others_go_on(
        tmp_path: Path) -> None:
    """A change a table cannot take in place (a column's type) leaves that topic unread,
    said why, and the other mirrors are written."""
    assert jars_missing() is None, jars_missing()
    source = DebeziumSource(tmp_path, uuid.uuid4().hex[:10])
    asyncio.run(source.create([
        "CREATE TABLE a (id integer PRIMARY KEY, v integer)",
        "CREATE TABLE b (id integer PRIMARY KEY, v text)",
        "INSERT INTO a VALUES (1, 1)", "INSERT INTO b VALUES (1, 'x')"]))
    h = Harness(tmp_path, partitions=1, cdc={
        "refresh_s": 1.0, "mirrors": [{"topics": source.prefix + r"\.public\.(a|b)"}]})

    def only_mirrors(config: dict[str, Any]) -> None:
        config["event_types"] = {}
        config["topics"] = []
    h.rewrite(only_mirrors)
    h.topics.update({"a": source.topic("a"), "b": source.topic("b")})
    try:
        source.start()
        source.streaming()
        eventually(lambda: h.weir("run", "--until-caught-up").returncode == 0
                   and h.scalar("SELECT count(*) FROM a") == 1, 120, "both mirrors")

        async def change() -> None:
            conn = await asyncpg.connect(source.dsn)
            try:
                await conn.execute("ALTER TABLE a ALTER COLUMN v TYPE text")
                await conn.execute("INSERT INTO a VALUES (2, 'two')")
                await conn.execute("INSERT INTO b VALUES (2, 'y')")
            finally:
                await conn.close()
        asyncio.run(change())
        # The newest change of a now says v is text; b goes on.
        time.sleep(3)
        done = h.weir("run", "--until-caught-up", timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert h.scalar("SELECT count(*) FROM b") == 2
        assert h.scalar("SELECT count(*) FROM a") == 1
        assert "type changes from integer to text" in done.stdout, done.stdout[-3000:]
        shown = {r["topic"]: r for r in orjson.loads(h.weir("cdc-mirrors", "--json").stdout)}
        assert shown[source.topic("a")]["state"] == "refused", shown
        assert "type changes from integer to text" in shown[source.topic("a")]["why"]
        assert shown[source.topic("b")]["state"] == "mirrored"
    finally:
        h.cleanup()
        source.drop()
