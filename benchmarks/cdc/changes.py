"""The CDC benchmark's data: change events of a ``customers`` table, and the table they leave.

The events are what Debezium's PostgreSQL connector (3.6.1.Final, ``decimal.handling.mode
=double``, the source table with ``REPLICA IDENTITY FULL``) writes through Kafka Connect's
JSON converter with schemas on: a key ``{"schema": <struct of the primary key>, "payload":
{"id": …}}`` and a value ``{"schema": <the whole envelope's schema>, "payload": {"before",
"after", "source", "op", "ts_ms", …}}``; after each delete the tombstone (the same key, no
value). The mix is seeded, so a run's data is the same for every system and every run.

The model is the source table after the changes: key → last row, deletes remove. Both
systems' tables are compared with it row by row, every column, in a canonical form (numbers
as floats, times as epoch microseconds, uuids as text), so that a ``timestamp`` and a
``timestamptz`` column holding the same instant compare equal.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from benchmarks.connect.envelope import create_topics
from benchmarks.env import BOOTSTRAP

TABLE = "customers"
SERVER = "bench"  # the source connector's topic.prefix, as its schema names carry it
VERSION = "3.6.1.Final"
EPOCH = datetime(2026, 12, 1, tzinfo=UTC)
EPOCH_US = int(EPOCH.timestamp()) * 1_000_000
EPOCH_MS = EPOCH_US // 1000
MICRO_TS, ZONED_TS, UUID = ("io.debezium.time.MicroTimestamp", "io.debezium.time.ZonedTimestamp",
                            "io.debezium.data.Uuid")
# The source table: (column, Connect type, optional, Debezium's logical type).
# CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text,
#   balance numeric(12,2), active boolean NOT NULL, updated_at timestamp,
#   created_at timestamptz NOT NULL, external_id uuid NOT NULL)
COLUMNS: list[tuple[str, str, bool, str | None]] = [
    ("id", "int64", False, None),
    ("name", "string", False, None),
    ("email", "string", True, None),
    ("balance", "double", True, None),
    ("active", "boolean", False, None),
    ("updated_at", "int64", True, MICRO_TS),
    ("created_at", "string", False, ZONED_TS),
    ("external_id", "string", False, UUID),
]
# The canonical form both tables are read in (the same SQL for Weir's and the sink's table).
CANONICAL_SQL = (
    "SELECT id, name, email, balance::float8 AS balance, active, "
    "(extract(epoch FROM updated_at) * 1000000)::bigint AS updated_us, "
    "(extract(epoch FROM created_at) * 1000000)::bigint AS created_us, "
    "external_id::text AS external_id FROM {schema}." + TABLE + " ORDER BY id")
Canonical = tuple[int, str, str | None, float | None, bool, int | None, int, str]


def _field(name: str, kind: str, optional: bool, logical: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "optional": optional}
    if logical is not None:
        spec |= {"name": logical, "version": 1}
    return spec | {"field": name}


def key_schema() -> dict[str, Any]:
    """The key's Connect schema: the primary key's struct."""
    return {"type": "struct", "fields": [_field("id", "int64", False, None)],
            "optional": False, "name": f"{SERVER}.public.{TABLE}.Key"}


def envelope_schema() -> dict[str, Any]:
    """The value's Connect schema: Debezium's change envelope of the table's rows."""
    row = {"type": "struct", "fields": [_field(*c) for c in COLUMNS], "optional": True,
           "name": f"{SERVER}.public.{TABLE}.Value"}
    source = {"type": "struct", "optional": False,
              "name": "io.debezium.connector.postgresql.Source", "field": "source", "fields": [
                  _field("version", "string", False, None),
                  _field("connector", "string", False, None),
                  _field("name", "string", False, None),
                  _field("ts_ms", "int64", False, None),
                  {"type": "string", "optional": True, "name": "io.debezium.data.Enum",
                   "version": 1, "parameters": {"allowed": "true,first,first_in_data_collection,"
                                                "last_in_data_collection,last,false,incremental"},
                   "default": "false", "field": "snapshot"},
                  _field("db", "string", False, None),
                  _field("sequence", "string", True, None),
                  _field("ts_us", "int64", True, None),
                  _field("ts_ns", "int64", True, None),
                  _field("schema", "string", False, None),
                  _field("table", "string", False, None),
                  _field("txId", "int64", True, None),
                  _field("lsn", "int64", True, None),
                  _field("xmin", "int64", True, None)]}
    block = {"type": "struct", "optional": True, "name": "event.block", "version": 1,
             "field": "transaction", "fields": [
                 _field("id", "string", False, None),
                 _field("total_order", "int64", False, None),
                 _field("data_collection_order", "int64", False, None)]}
    return {"type": "struct", "optional": False, "version": 2,
            "name": f"{SERVER}.public.{TABLE}.Envelope", "fields": [
                row | {"field": "before"}, row | {"field": "after"}, source, block,
                _field("op", "string", False, None), _field("ts_ms", "int64", True, None),
                _field("ts_us", "int64", True, None), _field("ts_ns", "int64", True, None)]}


def zoned(us: int) -> str:
    """A ``timestamptz`` as Debezium's ZonedTimestamp writes it (ISO-8601, UTC)."""
    return (EPOCH + timedelta(microseconds=us - EPOCH_US)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micros(zoned_text: str) -> int:
    """Epoch microseconds of a ZonedTimestamp, exactly (a float of them would not be)."""
    return EPOCH_US + (datetime.fromisoformat(zoned_text) - EPOCH) // timedelta(microseconds=1)


def canonical(row: dict[str, Any]) -> Canonical:
    """A model row in the form :data:`CANONICAL_SQL` reads a table's row in."""
    return (row["id"], row["name"], row["email"], row["balance"], row["active"],
            row["updated_at"], micros(row["created_at"]), row["external_id"])


def digest(rows: list[Canonical]) -> str:
    """A SHA-256 over rows in key order, every column."""
    return hashlib.sha256(orjson.dumps(rows)).hexdigest()


@dataclass
class Workload:
    """``changes`` seeded changes: 50 % creates, 40 % updates of live rows, 10 % deletes.

    :meth:`records` yields the Kafka records (key, value; None for a tombstone) in the
    order the source committed them, filling :attr:`model` and :attr:`ops` as it goes.
    """

    changes: int
    seed: int = 11
    model: dict[int, dict[str, Any]] = field(default_factory=dict)
    ops: Counter[str] = field(default_factory=Counter)

    def records(self) -> Iterator[tuple[bytes, bytes | None]]:
        r = random.Random(self.seed)
        head = b'{"schema":' + orjson.dumps(envelope_schema()) + b',"payload":'
        key_head = b'{"schema":' + orjson.dumps(key_schema()) + b',"payload":{"id":'
        live: list[int] = []  # the live keys, and where each is in the list, to pick and
        where: dict[int, int] = {}  # remove one at random in constant time
        next_id, lsn = 1, 38_000_000_000
        self.model.clear()
        self.ops.clear()
        for i in range(self.changes):
            pick = r.random()
            if not live or pick < 0.5:
                op, key, before = "c", next_id, None
                next_id += 1
                where[key] = len(live)
                live.append(key)
                after: dict[str, Any] | None = self._row(r, key, None, i)
            else:
                op = "u" if pick < 0.9 else "d"
                key = live[r.randrange(len(live))]
                before = self.model[key]
                after = self._row(r, key, before, i) if op == "u" else None
            if after is None:
                del self.model[key]
                moved = live.pop()
                if moved != key:
                    live[where[key]] = moved
                    where[moved] = where[key]
                del where[key]
            else:
                self.model[key] = after
            self.ops[op] += 1
            lsn += r.randrange(56, 400)
            ts_ms = EPOCH_MS + i
            payload = {
                "before": before, "after": after,
                "source": {"version": VERSION, "connector": "postgresql", "name": SERVER,
                           "ts_ms": ts_ms, "snapshot": "false", "db": "src",
                           "sequence": f'["{lsn - 56}","{lsn}"]', "ts_us": ts_ms * 1000,
                           "ts_ns": ts_ms * 1_000_000, "schema": "public", "table": TABLE,
                           "txId": 7_000 + i, "lsn": lsn, "xmin": None},
                "transaction": None, "op": op, "ts_ms": ts_ms + 3, "ts_us": (ts_ms + 3) * 1000,
                "ts_ns": (ts_ms + 3) * 1_000_000}
            record_key = key_head + str(key).encode() + b"}}"
            yield record_key, head + orjson.dumps(payload) + b"}"
            if op == "d":
                yield record_key, None

    @staticmethod
    def _row(r: random.Random, key: int, before: dict[str, Any] | None, i: int
             ) -> dict[str, Any]:
        """A new version of row ``key``: an update keeps its creation time and uuid."""
        if before is None:
            created, external = EPOCH_US + i * 1_000 + r.randrange(1_000), \
                str(uuid.UUID(int=r.getrandbits(128), version=4))
        else:
            created = micros(before["created_at"])
            external = before["external_id"]
        return {
            "id": key, "name": f"customer {key} #{i}",
            "email": None if r.random() < 0.1 else f"c{key}.{r.randrange(1000)}@example.com",
            "balance": None if r.random() < 0.05 else r.randrange(10_000_000) / 100,
            "active": r.random() < 0.8,
            "updated_at": None if r.random() < 0.05 else EPOCH_US + i * 1_000 + 500,
            "created_at": zoned(created), "external_id": external,
        }

    def expected(self) -> list[Canonical]:
        """The model's rows in key order, canonical (call after :meth:`records` is spent)."""
        return [canonical(self.model[k]) for k in sorted(self.model)]


async def produce(workload: Workload, topic: str, partitions: int) -> dict[str, int]:
    """Every record of ``workload`` to a new ``topic``; counts of records and bytes.

    Partitioned by the key's bytes as Kafka's default partitioner does (murmur2), as the
    source connector's producer would: all changes of a row on one partition, in order.
    """
    await create_topics([topic], partitions)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5,
                                enable_idempotence=True, max_batch_size=1024 * 1024,
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    totals = {"records": 0, "tombstones": 0, "key_bytes": 0, "value_bytes": 0}
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value in workload.records():
            pending.append(await producer.send(topic, value, key=key))
            totals["records"] += 1
            totals["tombstones"] += value is None
            totals["key_bytes"] += len(key)
            totals["value_bytes"] += len(value or b"")
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return totals


@dataclass(frozen=True)
class Check:
    """A table against the model: its rows, digest, and how it differs."""

    rows: int
    digest: str
    missing: int  # keys of the model the table lacks
    extra: int    # keys the table holds that the model does not
    differing: int  # keys in both whose rows differ

    @property
    def matches(self) -> bool:
        return self.missing == self.extra == self.differing == 0


async def check(dsn: str, schema: str, expected: list[Canonical]) -> Check:
    """``schema``'s table read in canonical form, compared with ``expected``."""
    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch(CANONICAL_SQL.format(schema=schema))
    finally:
        await conn.close()
    rows: list[Canonical] = [tuple(r) for r in records]
    if rows == expected:
        return Check(len(rows), digest(rows), 0, 0, 0)
    held, want = {r[0]: r for r in rows}, {r[0]: r for r in expected}
    return Check(len(rows), digest(rows), len(want.keys() - held.keys()),
                 len(held.keys() - want.keys()),
                 sum(held[k] != want[k] for k in held.keys() & want.keys()))
