"""Two routes to half the CPU per event, as prototypes beside today's row route.

    .venv/bin/python -m benchmarks.routes [--events 40000] [--batch 5000] [--repeats 5]

The same example orders (``weir produce``'s seeded events, the example's contract and its
transform, the table ``make bench`` writes) go three ways into PostgreSQL's staging tables,
one transaction per batch, on the local stack's server:

- **rows** (today's ``weir run``): :class:`~processor.decode.decoder.Decoder` per record
  (``orjson``, the msgspec check, the transform, the generated row builder), then asyncpg's
  ``copy_records_to_table``.
- **typed**: a msgspec ``Struct`` made for the contract decodes each record's bytes to typed
  values in one C call (a uuid, an aware datetime, the amount as the literal's ``Decimal``,
  the line items checked and encoded again), then the same row tuple and COPY.
- **columnar**: the batch's values joined → ``pyarrow.json.read_json`` with an explicit
  schema → the contract's checks as Arrow masks (a refused record would go to the row path)
  → the transform as an Arrow kernel → ``pgpq``'s binary COPY. The amount and the jsonb
  sub-documents (``items``, ``shipping``) are not rendered by the client: the
  ``INSERT … SELECT`` takes them from ``raw`` (exact to the literal, and no client cost).

It times the client's CPU (``time.process_time``: decode, checks, build, encode and send)
per event, in alternating order per repeat, and the server's time for each batch's
``INSERT … SELECT`` (what the columnar route moves to PostgreSQL). Then it compares what each
route wrote with what the row route wrote, column by column as PostgreSQL's text, so a
route that is fast because it writes something else is seen. These are prototypes for a
decision (only the usual event; a refused record is counted, not decoded): the figures go
to ``benchmarks/results/<date>-routes-<commit>.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
import numpy as np
import orjson
import pgpq
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from pgpq import encoders as enc
from pgpq import schema as pg_schema

from benchmarks.env import DSN, ROOT, Names, git_sha, loadavg, machine, write_config
from processor.commands.produce.sample import SampleEvents
from processor.contracts import load_contracts
from processor.core.connections import register_codecs
from processor.core.pgtime import aware_micros, kafka_micros
from processor.core.settings import Settings, load_settings
from processor.decode.columnar import CANONICAL_UUID, uuid_bytes
from processor.decode.decoder import Decoder
from processor.schema.migrate import migrate
from processor.schema.tables import TableSpec, table_spec
from processor.transform.loader import load_chains

PARTITION = 3
ROUTES = ("rows", "typed", "columnar")
# Taken from raw by the columnar route's INSERT … SELECT, not rendered by the client.
FROM_RAW = {"amount": "(raw->>'amount')::numeric", "items": "raw->'items'",
            "shipping": "NULLIF(raw->'shipping', 'null'::jsonb)"}


class Item(msgspec.Struct):
    """A line item as the contract has it."""

    sku: str
    qty: Annotated[int, msgspec.Meta(ge=1)]
    price: Annotated[float, msgspec.Meta(ge=0)] | Annotated[int, msgspec.Meta(ge=0)]


class Order(msgspec.Struct):
    """The order contract (``schemas/order.v1.json``) as a msgspec type: written by hand for
    the prototype; a real route would generate it from the contract, as fastcheck does."""

    event_id: uuid.UUID
    customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    seq: Annotated[int, msgspec.Meta(ge=1)]
    occurred_at: datetime
    order_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    status: Literal["created", "paid", "shipped", "cancelled"]
    amount: Decimal
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{3}$")]
    items: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=200)]
    channel: Literal["web", "app", "store"] | None = None
    shipping: msgspec.Raw | None = None
    tags: Annotated[list[str], msgspec.Meta(max_length=20)] | msgspec.UnsetType = msgspec.UNSET
    placed_ms: Annotated[int, msgspec.Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET


ARROW_IN = pa.schema([
    ("event_id", pa.string()), ("customer_id", pa.string()), ("seq", pa.int64()),
    ("occurred_at", pa.string()), ("order_id", pa.string()), ("status", pa.string()),
    ("amount", pa.float64()), ("currency", pa.string()),
    ("items", pa.list_(pa.struct([("sku", pa.string()), ("qty", pa.int64()),
                                  ("price", pa.float64())]))),
    ("channel", pa.string()), ("tags", pa.list_(pa.string())), ("placed_ms", pa.int64()),
])
STAGED = pa.schema([
    pa.field("event_id", pa.binary(16), False), pa.field("customer_id", pa.string(), False),
    pa.field("seq", pa.int64(), False),
    pa.field("occurred_at", pa.timestamp("us", tz="UTC"), False),
    pa.field("order_id", pa.string(), False), pa.field("status", pa.string(), False),
    pa.field("currency", pa.string(), False), pa.field("channel", pa.string()),
    pa.field("tags", pa.list_(pa.field("item", pa.string()))),
    pa.field("placed_ms", pa.int64()),
    pa.field("event_time", pa.timestamp("us", tz="UTC"), False),
    pa.field("kafka_topic", pa.string(), False), pa.field("kafka_partition", pa.int32(), False),
    pa.field("kafka_offset", pa.int64(), False),
    pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC"), False),
    pa.field("raw", pa.string(), False),
])
# The contract's date-time, canonical forms only (anything else would take the row path).
DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"

Record = tuple[int, int, bytes]  # offset, Kafka timestamp (ms), value


class Routes:
    """The three routes over one connection, each into its own staging table."""

    def __init__(self, settings: Settings, conn: asyncpg.Connection, topic: str) -> None:
        self.topic = topic
        contracts = load_contracts(settings)
        self.spec: TableSpec = table_spec(contracts["order"], settings)
        self.decoder = Decoder(settings, contracts, load_chains(settings))
        self.conn = conn
        self.typed = msgspec.json.Decoder(Order)
        self.encoders = {f.name: _encoder(f) for f in STAGED}
        self.refused = dict.fromkeys(ROUTES, 0)
        self.split = {route: [0.0, 0.0] for route in ROUTES}  # build, COPY (CPU seconds)

    async def prepare(self) -> None:
        """The staging tables: today's, and the columnar route's (without what it takes
        from raw), plus one table per route that keeps what it wrote, for the comparison."""
        target = self.spec.qualified
        await self.conn.execute(self.spec.create_stage_sql())
        await self.conn.execute(
            "CREATE TEMP TABLE stage_columnar ON COMMIT DELETE ROWS AS "
            f"SELECT {', '.join(STAGED.names)} FROM {target} LIMIT 0")
        for route in ROUTES:
            await self.conn.execute(
                f"CREATE TEMP TABLE kept_{route} AS SELECT {', '.join(self.spec.columns)} "
                f"FROM {target} LIMIT 0")

    async def run(self, route: str, batches: Sequence[Sequence[Record]]) -> tuple[float, float]:
        """Client CPU seconds and server seconds (``INSERT … SELECT``) for every batch."""
        await self.conn.execute(f"TRUNCATE kept_{route}")
        write: Callable[[Sequence[Record]], Any] = getattr(self, f"_{route}")
        cpu = server = 0.0
        for batch in batches:
            async with self.conn.transaction():
                start = time.process_time()
                await write(batch)
                cpu += time.process_time() - start
                wall = time.perf_counter()
                await self.conn.execute(self._keep_sql(route))
                server += time.perf_counter() - wall
        return cpu, server

    def _keep_sql(self, route: str) -> str:
        cols = ", ".join(self.spec.columns)
        if route != "columnar":
            return f"INSERT INTO kept_{route} ({cols}) SELECT {cols} FROM pg_temp.{self.spec.stage}"
        picked = ", ".join(FROM_RAW.get(c, c) for c in self.spec.columns)
        return f"INSERT INTO kept_columnar ({cols}) SELECT {picked} FROM stage_columnar"

    async def _rows(self, batch: Sequence[Record]) -> None:
        start = time.process_time()
        rows = []
        for offset, ts, value in batch:
            decoded = self.decoder.decode(self.topic, PARTITION, offset, ts, value)
            assert decoded is not None
            rows.append(decoded[1])
        mid = time.process_time()
        await self.conn.copy_records_to_table(self.spec.stage, records=rows,
                                              columns=self.spec.columns)
        self._split("rows", start, mid)

    async def _typed(self, batch: Sequence[Record]) -> None:
        start = time.process_time()
        rows = []
        decode, dumps = self.typed.decode, msgspec.json.encode
        for offset, ts, value in batch:
            try:
                o = decode(value)
            except msgspec.ValidationError:
                self.refused["typed"] += 1  # the row path would decide it
                continue
            if o.occurred_at.tzinfo is None:  # the contract's date-time has an offset
                self.refused["typed"] += 1
                continue
            when = aware_micros(o.occurred_at)
            kafka = kafka_micros(ts)
            rows.append((
                o.event_id, o.customer_id, o.seq, when, o.order_id, o.status, o.amount,
                o.currency.upper(), dumps(o.items), o.channel,
                None if o.shipping is None else bytes(o.shipping),
                None if o.tags is msgspec.UNSET else o.tags,
                None if o.placed_ms is msgspec.UNSET else o.placed_ms,
                when, self.topic, PARTITION, offset, kafka, value))
        mid = time.process_time()
        await self.conn.copy_records_to_table(self.spec.stage, records=rows,
                                              columns=self.spec.columns)
        self._split("typed", start, mid)

    async def _columnar(self, batch: Sequence[Record]) -> None:
        start = time.process_time()
        values = [v for _, _, v in batch]
        joined = b"\n".join(values)
        # What the JSON reader would not refuse per record: a newline inside one value (it
        # would split it), an escape (a NUL among them), bytes that are not ASCII (it lets
        # invalid UTF-8 through). Such a batch takes the row path; none does here.
        if joined.count(b"\n") != len(values) - 1 or b"\\" in joined or not joined.isascii():
            raise AssertionError("the prototype takes only the usual event")
        table = pj.read_json(
            io.BytesIO(joined),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(joined) + 1),
            parse_options=pj.ParseOptions(explicit_schema=ARROW_IN,
                                          unexpected_field_behavior="ignore"))
        if table.num_rows != len(values):  # an empty value, or two documents in one
            raise AssertionError("the prototype takes only the usual event")
        ok = _checks(table)
        refused = len(values) - pc.sum(ok).as_py()
        if refused:  # the row path would decide these; the prototype only counts them
            self.refused["columnar"] += refused
            table = table.filter(ok)
            values = [v for v, good in zip(values, ok.to_pylist(), strict=True) if good]
        n = table.num_rows
        occurred = pc.cast(table["occurred_at"], pa.timestamp("us", tz="UTC"))
        offsets = pa.array([o for o, _, _ in batch], pa.int64())
        kafka = pc.cast(pa.array([ts * 1000 for _, ts, _ in batch], pa.int64()),
                        pa.timestamp("us", tz="UTC"))
        if refused:
            offsets, kafka = offsets.filter(ok), kafka.filter(ok)
        staged = pa.Table.from_arrays([
            uuid_bytes(table["event_id"]), table["customer_id"], table["seq"], occurred,
            table["order_id"], table["status"], pc.utf8_upper(table["currency"]),
            table["channel"], table["tags"], table["placed_ms"], occurred,
            pa.array([self.topic] * n, pa.string()), pa.array([PARTITION] * n, pa.int32()),
            offsets, kafka, pa.array(values, pa.binary()).cast(pa.string()),
        ], schema=STAGED)
        encoder = pgpq.ArrowToPostgresBinaryEncoder.new_with_encoders(STAGED, self.encoders)
        body = encoder.write_header() + b"".join(
            encoder.write_batch(b) for b in staged.to_batches()) + encoder.finish()
        mid = time.process_time()
        await self.conn.copy_to_table("stage_columnar", source=_once(body),
                                      columns=STAGED.names, format="binary")
        self._split("columnar", start, mid)

    def _split(self, route: str, start: float, mid: float) -> None:
        self.split[route][0] += mid - start
        self.split[route][1] += time.process_time() - mid

    async def differences(self) -> dict[str, dict[str, int]]:
        """Per route and column: rows whose text differs from the row route's."""
        found: dict[str, dict[str, int]] = {}
        for route in ROUTES[1:]:
            picks = ", ".join(
                f"count(*) FILTER (WHERE a.{c}::text IS DISTINCT FROM b.{c}::text) AS {c}"
                for c in self.spec.columns)
            row = await self.conn.fetchrow(
                f"SELECT count(b.event_id) AS matched, {picks} FROM kept_rows a "
                f"LEFT JOIN kept_{route} b USING (kafka_offset)")
            assert row is not None
            found[route] = {k: v for k, v in dict(row).items() if v or k == "matched"}
        return found


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _checks(t: pa.Table) -> pa.ChunkedArray:
    """The order contract's checks as one mask (True: the usual event, every check passed)."""
    def between(a: Any, low: int, high: int) -> Any:
        length = pc.utf8_length(a)
        return pc.and_(pc.greater_equal(length, low), pc.less_equal(length, high))

    items = t["items"]
    flat = pc.list_flatten(items)
    item_ok = pc.and_(pc.and_(pc.is_valid(pc.struct_field(flat, "sku")),
                              pc.greater_equal(pc.struct_field(flat, "qty"), 1)),
                      pc.greater_equal(pc.struct_field(flat, "price"), 0))
    # Every item of a record passes: no failing item has that record's index.
    bad_items = pc.list_parent_indices(items).filter(pc.invert(pc.fill_null(item_ok, False)))
    index = pa.array(np.arange(t.num_rows))
    masks = [
        pc.match_substring_regex(t["event_id"], CANONICAL_UUID),
        between(t["customer_id"], 1, 64), pc.greater_equal(t["seq"], 1),
        pc.match_substring_regex(t["occurred_at"], DATE_TIME),
        between(t["order_id"], 1, 64),
        pc.is_in(t["status"], pa.array(["created", "paid", "shipped", "cancelled"])),
        pc.greater_equal(t["amount"], 0),
        pc.match_substring_regex(t["currency"], "^[A-Za-z]{3}$"),
        pc.and_(pc.greater_equal(pc.list_value_length(items), 1),
                pc.less_equal(pc.list_value_length(items), 200)),
        pc.invert(pc.is_in(index, bad_items)),
        pc.or_kleene(pc.is_null(t["channel"]),
               pc.is_in(t["channel"], pa.array(["web", "app", "store"]))),
        pc.or_kleene(pc.is_null(t["tags"]), pc.less_equal(pc.list_value_length(t["tags"]), 20)),
        pc.or_kleene(pc.is_null(t["placed_ms"]), pc.greater_equal(t["placed_ms"], 0)),
    ]
    ok = masks[0]
    for mask in masks[1:]:
        ok = pc.and_kleene(ok, mask)
    return pc.fill_null(ok, False)  # a required value absent (null) fails


def _encoder(field: pa.Field) -> Any:
    if field.name == "raw":
        return enc.StringEncoderBuilder.new_with_output(field, pg_schema.Jsonb())
    return pgpq.ArrowToPostgresBinaryEncoder.infer_encoder(field)


def events(count: int, batch: int) -> list[list[Record]]:
    """``count`` example orders as ``weir produce`` makes them, in batches of ``batch``."""
    sample = SampleEvents(seed=7)
    now = int(datetime.now(UTC).timestamp() * 1000)
    records = [(i, now + i, orjson.dumps(sample.make("order")[1])) for i in range(count)]
    return [records[i:i + batch] for i in range(0, count, batch)]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every route, ``args.repeats`` times in alternating order; the figures."""
    names = Names.fresh("routes")
    settings = load_settings(write_config(names, 12))
    batches = events(args.events, args.batch)
    conn = await asyncpg.connect(DSN)
    try:
        await register_codecs(conn)
        await migrate(conn, settings, load_contracts(settings))
        routes = Routes(settings, conn, names.topics["order"])
        await routes.prepare()
        for route in ROUTES:  # warm: imports, caches, the server's plans
            await routes.run(route, batches[:1])
        routes.split = {route: [0.0, 0.0] for route in ROUTES}
        routes.refused = dict.fromkeys(ROUTES, 0)
        cpu: dict[str, list[float]] = {r: [] for r in ROUTES}
        server: dict[str, list[float]] = {r: [] for r in ROUTES}
        for repeat in range(args.repeats):
            for route in (ROUTES if repeat % 2 == 0 else ROUTES[::-1]):
                c, s = await routes.run(route, batches)
                cpu[route].append(c)
                server[route].append(s)
        differences = await routes.differences()
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.postgres.schema_name} CASCADE")
        await conn.close()
    per = 1e6 / args.events
    return {
        "events": args.events, "batch": args.batch, "repeats": args.repeats,
        "routes": {r: {
            "client_us_per_event": {"median": round(statistics.median(cpu[r]) * per, 2),
                                    "min": round(min(cpu[r]) * per, 2)},
            "build_us": round(routes.split[r][0] * per / args.repeats, 2),
            "copy_us": round(routes.split[r][1] * per / args.repeats, 2),
            "server_insert_us_per_event": round(statistics.median(server[r]) * per, 2),
            "refused": routes.refused[r],
        } for r in ROUTES},
        "differences_from_rows": differences,
    }


def report(result: dict[str, Any]) -> str:
    """The results as Markdown."""
    rows = result["routes"]
    base = rows["rows"]["client_us_per_event"]["median"]
    lines = [f"# Routes to half the CPU per event: run {result['run']}", "",
             f"{result['events']:,} example orders in batches of {result['batch']:,}, "
             f"{result['repeats']} repeats in alternating order; the 1-minute load "
             f"{result['load'][0]} before and {result['load_after'][0]} after.", "",
             "| route | client µs/event (median) | min | of which decode+build | COPY encode+send "
             "| ÷ rows | server INSERT…SELECT µs/event |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for route, r in rows.items():
        c = r["client_us_per_event"]
        lines.append(f"| {route} | {c['median']} | {c['min']} | {r['build_us']} | "
                     f"{r['copy_us']} | {c['median'] / base:.2f} | "
                     f"{r['server_insert_us_per_event']} |")
    lines += ["", "What each route wrote, against the row route (rows whose column's text "
              "differs; `matched` is the rows found):", ""]
    for route, diff in result["differences_from_rows"].items():
        lines.append(f"- {route}: {json.dumps(diff)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    load = loadavg()
    result = asyncio.run(measure(args))
    run = f"{datetime.now(UTC):%Y-%m-%d}-routes-{git_sha()}"
    result = {"run": run, "machine": machine(), "load": load, "load_after": loadavg(),
              **result}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{run}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / f"{run}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
