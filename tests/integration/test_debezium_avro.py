"""Debezium's change events in Avro through the schema registry, from a real source.

Debezium's PostgreSQL connector writes its change events with Apicurio's Avro converter in
Confluent's framing against the stack's registry (each envelope schema under
``<topic>-value``, referring to Debezium's ``Source`` record registered apart, as the
converter does by default), decimals exact (``decimal.handling.mode=precise``: Avro's
decimal).
Each mirror's contract is its subject, read as a Debezium envelope: the ``after`` record's
fields, typed by the same table as the JSON converter's schemas. A random workload on two
tables while Weir is SIGKILLed every few seconds; afterwards each mirror equals its source,
and a replay from the earliest offsets keeps it so.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration.cdc_source import (
    DebeziumSource,
    converge,
    differences,
    jars_missing,
    sigkilled_while,
)
from tests.integration.conftest import REGISTRY, Harness
from tests.integration.test_observability import get

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, "
    "balance numeric(12,2), born date, updated_at timestamptz, tag uuid, vip boolean)",
    "CREATE TABLE memberships (team integer, member integer, role text, "
    "PRIMARY KEY (team, member))",
    "INSERT INTO customers VALUES (1, 'first', 1.50, '1990-01-02', now(), "
    "'00000000-0000-0000-0000-000000000001', true)",
    "INSERT INTO memberships VALUES (1, 1, 'lead')",
]
KEYS = {"customers": ["id"], "memberships": ["team", "member"]}
COLUMNS = {"customers": "id, name, balance, born, updated_at, tag, vip",
           "memberships": "team, member, role"}
COMPARED = {t: (c, c) for t, c in COLUMNS.items()}


async def workload(dsn: str, changes: int, seed: int) -> int:
    rand = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    done = 0
    try:
        for i in range(changes):
            kind = rand.random()
            if rand.random() < 0.6:
                key = rand.randrange(1, 200)
                if kind < 0.1:
                    await conn.execute("DELETE FROM customers WHERE id = $1", key)
                else:
                    when = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(
                        microseconds=rand.randrange(10**12))
                    await conn.execute(
                        "INSERT INTO customers VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT "
                        "(id) DO UPDATE SET name = $2, balance = $3, born = $4, "
                        "updated_at = $5, tag = $6, vip = $7", key, f"n{i}",
                        None if kind > 0.9 else Decimal(rand.randrange(-10**8, 10**8)) / 100,
                        date(1950, 1, 1) + timedelta(days=rand.randrange(25_000)), when,
                        uuid.UUID(int=rand.randrange(2**128)), kind > 0.5)
            else:
                team, member = rand.randrange(15), rand.randrange(15)
                if kind < 0.15:
                    await conn.execute("DELETE FROM memberships WHERE team = $1 AND "
                                       "member = $2", team, member)
                else:
                    await conn.execute(
                        "INSERT INTO memberships VALUES ($1, $2, $3) ON CONFLICT (team, member) "
                        "DO UPDATE SET role = $3", team, member,
                        rand.choice(["lead", "dev", None]))
            done += 1
    finally:
        await conn.close()
    return done


def registered(subject: str) -> bool:
    """Has the connector registered a schema under ``subject``?"""
    return get(f"{REGISTRY}/subjects/{subject}/versions")[0] == 200


def test_avro_change_events_through_the_registry_mirror_their_tables(tmp_path: Path) -> None:
    assert jars_missing() is None, jars_missing()
    source = DebeziumSource(tmp_path, uuid.uuid4().hex[:10])
    asyncio.run(source.create(DDL))
    h = Harness(tmp_path, partitions=3, schema_registry={"url": REGISTRY})

    def mirrors(config: dict[str, Any]) -> None:
        config["event_types"] = {
            table: {"registry_subject": f"{source.topic(table)}-value", "table": table,
                    "envelope": "debezium", "write_mode": "upsert", "upsert_key": key,
                    "key_field": key[0] if len(key) == 1 else None}
            for table, key in KEYS.items()}
        config["topics"] = [{"name": source.topic(t), "event_type": t, "format": "avro"}
                            for t in KEYS]
    h.rewrite(mirrors)
    h.topics.update({f"cdc {t}": source.topic(t) for t in KEYS})
    try:
        source.start(partitions=3, avro=True)
        source.streaming()
        deadline = time.monotonic() + 60
        while not all(registered(f"{source.topic(t)}-value") for t in KEYS):
            assert time.monotonic() < deadline, source.tail()
            time.sleep(1)
        # The envelopes refer to the Source record registered apart: Weir inlines it.
        [reference] = get(f"{REGISTRY}/subjects/{source.topic('customers')}-value/versions/"
                          "latest")[1]["references"]
        assert reference["name"] == "io.debezium.connector.postgresql.Source", reference
        h.migrate()
        # The mirror's columns from the envelope's after record, Debezium's types mapped.
        types = {r["column_name"]: r["data_type"] for r in h.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE "
            "table_schema = $1 AND table_name = 'customers'", h.schema)}
        assert {c: types[c] for c in ("id", "balance", "born", "updated_at", "tag", "vip")} == {
            "id": "integer", "balance": "numeric", "born": "date",
            "updated_at": "timestamp with time zone", "tag": "uuid", "vip": "boolean"}
        done: list[int] = []
        writer = threading.Thread(target=lambda: done.append(asyncio.run(
            workload(source.dsn, 30_000, seed=11))))
        writer.start()
        proc, kills = sigkilled_while(h, writer)
        assert done == [30_000]
        assert kills >= 3
        converge(source, h, proc, COMPARED)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        assert h.scalar("SELECT count(*) FROM customers WHERE balance IS NOT NULL") > 50
        # The raw row holds the decimal exactly, as the source has it.
        assert h.scalar("SELECT count(*) FROM customers WHERE (raw->>'balance')::numeric "
                        "<> balance") == 0

        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        again = h.weir("run", "--until-caught-up", timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert asyncio.run(differences(source, h, COMPARED)) == dict.fromkeys(COMPARED, 0)
    finally:
        h.cleanup()
        source.drop()
