"""Child tables through the real pipeline: an array of each event as rows of its own table.

Against the real Kafka and PostgreSQL:

- the example order's line items as ``order_items`` (an insert table, partitioned by day,
  with a rollup of the items): every order's items are exactly its rows, the rollup equals
  the items, and a replay from the earliest offsets changes nothing;
- a cart, an upsert table keyed by the Kafka key: an update with fewer items leaves exactly
  the new items, a tombstone removes them, an older event replayed changes nothing, and
  with ``update_mode: merge`` an event without the array keeps the stored items;
- each bad array is a dead letter with its reason and Weir goes on;
- the example's orders as ``config/example.yaml`` maps them (nested columns, tags, an epoch
  time, a tenant header, the key, the items as rows): 50,000 of them while one of two
  processes is SIGKILLed, then every row and column of both tables equals a model computed
  here from the acknowledged events, and a replay from the earliest offsets changes nothing.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import load_settings
from tests.integration.conftest import KAFKA, ROOT, Harness, as_role, two_roles
from tests.integration.test_mapped_columns import publish

pytestmark = pytest.mark.integration

ITEMS = {"table": "order_items", "path": "items", "max_items": 50,
         "columns": [{"name": "sku", "path": "sku", "type": "text"},
                     {"name": "qty", "path": "qty", "type": "bigint"},
                     {"name": "price", "path": "price", "type": "numeric"}],
         "rollups": [{"table": "items_per_minute", "count_column": "lines",
                      "sums": ["qty"]}],
         "indexes": [{"columns": ["sku"]}]}

# The items of every order as the orders' own raw JSON has them: the model the child table
# must equal, row for row and column for column.
FROM_RAW = """
SELECT o.event_id, o.event_time, (i.n - 1)::integer AS item_index, i.item->>'sku' AS sku,
       (i.item->>'qty')::bigint AS qty, (i.item->>'price')::numeric AS price
FROM orders o, jsonb_array_elements(o.raw->'items') WITH ORDINALITY AS i(item, n)
"""
ITEM_ROWS = "SELECT event_id, event_time, item_index, sku, qty, price FROM order_items"


def test_order_items_are_the_orders_items_exactly_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, partitions=3)
    try:
        h.rewrite(lambda c: c["event_types"]["order"].update(children=[ITEMS]))
        h.migrate()
        parts = h.scalar("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = "
                         "i.inhrelid WHERE i.inhparent = $1::regclass",
                         f"{h.schema}.order_items")
        assert parts >= 2  # the default partition and today's, made by the parent's maker
        h.produce(3000)
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        orders = h.scalar("SELECT count(*) FROM orders")
        items = h.scalar("SELECT count(*) FROM order_items")
        assert orders > 1000
        assert items > orders
        diff = f"SELECT count(*) FROM (({FROM_RAW}) EXCEPT ALL ({ITEM_ROWS})) a"
        back = f"SELECT count(*) FROM (({ITEM_ROWS}) EXCEPT ALL ({FROM_RAW})) a"
        assert h.scalar(diff) == 0
        assert h.scalar(back) == 0
        assert h.scalar("SELECT sum(lines) FROM items_per_minute") == items
        assert h.scalar("SELECT sum(qty) FROM items_per_minute") == h.scalar(
            "SELECT sum(qty) FROM order_items")

        # A replay from the earliest offsets writes nothing twice, the rollup included.
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        again = h.weir("run", "--until-caught-up", timeout=240)
        assert again.returncode == 0, again.stderr[-3000:]
        assert h.scalar("SELECT count(*) FROM order_items") == items
        assert h.scalar("SELECT sum(lines) FROM items_per_minute") == items
        assert h.scalar(diff) == 0
    finally:
        h.cleanup()


CART = {
    "type": "object", "required": ["cart_id", "status"],
    "properties": {"cart_id": {"type": "string"}, "status": {"type": "string"},
                   "lines": {}},  # any: the child mapping checks it
}
LINES = [{"name": "sku", "path": "sku", "type": "text"},
         {"name": "qty", "path": "qty", "type": "integer"},
         {"name": "note", "path": "note.text", "type": "text"}]


def cart_harness(tmp_path: Path) -> Harness:
    schema = tmp_path / "cart.json"
    tmp_path.mkdir(parents=True, exist_ok=True)
    schema.write_text(orjson.dumps(CART).decode())
    h = Harness(tmp_path, partitions=3)
    base = h.topics["order"]
    h.topics["cart"] = base.replace("orders", "carts")
    h.topics["kept"] = base.replace("orders", "kept_carts")

    def add(config: dict[str, Any]) -> None:
        for name, table, mode in (("cart", "carts", "replace"), ("kept", "kept_carts", "merge")):
            config["event_types"][name] = {
                "schema_file": str(schema), "table": table, "key_field": "cart_id",
                "write_mode": "upsert", "upsert_key": ["cart_id"], "update_mode": mode,
                "children": [{"table": f"{table}_lines", "path": "lines", "max_items": 5,
                              "index_column": "line_no", "columns": LINES}]}
            config["topics"].append({"name": h.topics[name], "event_type": name})
    h.rewrite(add)
    return h


def cart(cart_id: str, status: str, lines: list[Any] | str | None = "absent") -> bytes:
    event: dict[str, Any] = {"cart_id": cart_id, "status": status}
    if lines != "absent":
        event["lines"] = lines
    return orjson.dumps(event)


def line(sku: str, qty: int, note: str | None = None) -> dict[str, Any]:
    return {"sku": sku, "qty": qty, **({"note": {"text": note}} if note else {})}


def lines_of(h: Harness, table: str) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for r in h.sql(f"SELECT cart_id, line_no, sku, qty, note FROM {table} "
                   "ORDER BY cart_id, line_no"):
        out.setdefault(r["cart_id"], []).append((r["line_no"], r["sku"], r["qty"], r["note"]))
    return out


BAD_CARTS = [
    (cart("bad-1", "open", {"sku": "a"}), "conversion_error",  # type: ignore[arg-type]
     "child table carts_lines: path 'lines': {'sku': 'a'} is not an array"),
    (cart("bad-2", "open", [line("a", 1)] * 6), "too_many_items",
     "child table carts_lines: path 'lines': 6 items, over max_items (5)"),
    (cart("bad-3", "open", [line("a", 1), {"sku": "b", "qty": "two"}]), "conversion_error",
     "child table carts_lines: path 'lines', item 1: path 'qty': 'two' is a string"),
    (cart("bad-4", "open", [{"sku": "a", "qty": 1, "note": ["x"]}]), "conversion_error",
     "item 0: path 'note.text': note is an array, not an object"),
    (cart("bad-5", "open", [{"sku": "a\u0000b", "qty": 1}]), "conversion_error",
     "field 'lines[0].sku' holds a NUL character"),  # the raw JSON's check, first
]


def test_upserted_parents_replace_their_children_and_tombstones_remove_them(
        tmp_path: Path) -> None:
    h = cart_harness(tmp_path)
    try:
        h.migrate()
        updates = [
            cart("a", "open", [line("a1", 1), line("a2", 2, "gift"), line("a3", 3)]),
            cart("b", "open", [line("b1", 1), line("b2", 1)]),
            cart("c", "open", [line("c1", 4)]),
            *(value for value, _, _ in BAD_CARTS),
            cart("a", "paid", [line("a9", 9)]),  # fewer items: exactly the new one
            cart("c", "paid", []),  # an empty array: no items
            cart("d", "open"),  # no array at all (replace): no items
        ]
        keys = [orjson.loads(v)["cart_id"].encode() for v in updates]
        asyncio.run(publish(h, h.topics["cart"], updates, keys))
        asyncio.run(publish(h, h.topics["cart"], [None], [b"b"]))  # type: ignore[list-item]
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        assert lines_of(h, "carts_lines") == {"a": [(0, "a9", 9, None)]}
        assert {r["cart_id"]: r["status"] for r in h.sql("SELECT cart_id, status FROM carts")
                } == {"a": "paid", "c": "paid", "d": "open"}
        letters = {bytes(r["key"]).decode(): r for r in h.sql(
            "SELECT key, reason, error FROM weir_dead_letters")}
        assert len(letters) == len(BAD_CARTS)
        for value, reason, fragment in BAD_CARTS:
            letter = letters[orjson.loads(value)["cart_id"]]
            assert (letter["reason"], fragment in letter["error"]) == (reason, True), (
                fragment, letter["error"])

        # A replay of every event, the older ones included, changes nothing.
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        again = h.weir("run", "--until-caught-up", timeout=240)
        assert again.returncode == 0, again.stderr[-3000:]
        assert lines_of(h, "carts_lines") == {"a": [(0, "a9", 9, None)]}
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == len(BAD_CARTS)
    finally:
        h.cleanup()


def test_merge_keeps_the_stored_items_when_an_update_has_no_array(tmp_path: Path) -> None:
    h = cart_harness(tmp_path)
    try:
        h.migrate()
        first = [cart("m", "open", [line("m1", 1), line("m2", 2)]),
                 cart("n", "open", [line("n1", 1)])]
        asyncio.run(publish(h, h.topics["kept"], first, [b"m", b"n"]))
        assert h.weir("run", "--until-caught-up", timeout=240).returncode == 0
        # In a later batch: no array keeps them (m); a null array keeps them too; an empty
        # array is no items (n).
        later = [cart("m", "paid"), cart("m", "shipped", None), cart("n", "paid", [])]
        asyncio.run(publish(h, h.topics["kept"], later, [b"m", b"m", b"n"]))
        assert h.weir("run", "--until-caught-up", timeout=240).returncode == 0
        assert lines_of(h, "kept_carts_lines") == {
            "m": [(0, "m1", 1, None), (1, "m2", 2, None)]}
        assert {r["cart_id"]: r["status"] for r in h.sql(
            "SELECT cart_id, status FROM kept_carts")} == {"m": "shipped", "n": "paid"}
        # In one batch: the newest event that carries the array decides.
        asyncio.run(publish(h, h.topics["kept"], [
            cart("m", "open", [line("m7", 7)]), cart("m", "paid"),
            cart("n", "open", [line("n5", 5)]), cart("n", "paid", [line("n6", 6)])],
            [b"m", b"m", b"n", b"n"]))
        assert h.weir("run", "--until-caught-up", timeout=240).returncode == 0
        assert lines_of(h, "kept_carts_lines") == {
            "m": [(0, "m7", 7, None)], "n": [(0, "n6", 6, None)]}
    finally:
        h.cleanup()


# The example's orders as config/example.yaml maps them: columns from paths, the key and a
# header, tags as text[], and the line items as order_items.
EXAMPLE = yaml.safe_load((ROOT / "config/example.yaml").read_text())["event_types"]["order"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# event, key, headers, the record's timestamp (ms), its metadata
Acked = tuple[dict[str, Any], str, list[tuple[str, bytes]], int, Any]


def publish_rich(h: Harness, count: int, acked: list[Acked]) -> None:
    """``count`` rich sample orders (with their tenant header), every acknowledgement kept."""
    async def go() -> None:
        await ensure_topics(load_settings(h.config), 4)
        sample = SampleEvents(seed=21, rich=True)
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=5,
                                    enable_idempotence=True)
        await producer.start()
        try:
            for start in range(0, count, 1000):
                sent = []
                for _ in range(start, min(start + 1000, count)):
                    key, event = sample.make("order")
                    headers = sample.headers("order", key)
                    ts = int(time.time() * 1000)
                    sent.append((event, key, headers, ts, await producer.send(
                        h.topics["order"], orjson.dumps(event), key=key.encode(),
                        headers=headers, timestamp_ms=ts)))
                for event, key, headers, ts, future in sent:
                    acked.append((event, key, headers, ts, await future))
        finally:
            await producer.stop()
    asyncio.run(go())


def order_model(acked: list[Acked]) -> tuple[dict[str, dict[str, Any]], set[tuple[Any, ...]]]:
    """Every order row (by event id) and every item row, computed here from the events."""
    orders, items = {}, set()
    for event, key, headers, timestamp_ms, meta in acked:
        occurred = datetime.fromisoformat(event["occurred_at"])
        shipping = event.get("shipping") or {}
        orders[event["event_id"]] = {
            "customer_id": event["customer_id"], "seq": event["seq"],
            "occurred_at": occurred, "order_id": event["order_id"], "status": event["status"],
            "amount": Decimal(repr(event["amount"])), "currency": event["currency"].upper(),
            "items": event["items"], "channel": event["channel"],
            "shipping": event["shipping"], "tags": event["tags"],
            "placed_ms": event["placed_ms"],
            "ship_country": shipping.get("address", {}).get("country"),
            "ship_city": shipping.get("address", {}).get("city"),
            "placed_at": EPOCH + timedelta(milliseconds=event["placed_ms"]),
            "tenant": dict(headers)["tenant"].decode(), "kafka_key": key,
            "event_time": occurred, "kafka_topic": meta.topic,
            "kafka_partition": meta.partition, "kafka_offset": meta.offset,
            "kafka_timestamp": EPOCH + timedelta(milliseconds=timestamp_ms),
            "raw": event,
        }
        items |= {(event["event_id"], occurred, i, item["sku"], item["qty"],
                   Decimal(repr(item["price"]))) for i, item in enumerate(event["items"])}
    return orders, items


def stored(h: Harness) -> tuple[dict[str, dict[str, Any]], set[tuple[Any, ...]]]:
    """The orders and order_items tables as the model's shapes (jsonb parsed)."""
    orders = {}
    for r in h.sql("SELECT * FROM orders"):
        row = dict(r)
        row.pop("ingested_at")
        for name in ("items", "shipping", "raw"):
            row[name] = None if row[name] is None else orjson.loads(row[name])
        orders[str(row.pop("event_id"))] = row
    items = {(str(r["event_id"]), *tuple(r)[1:]) for r in h.sql(
        "SELECT event_id, event_time, item_index, sku, qty, price FROM order_items")}
    return orders, items


def test_the_example_orders_mapped_land_exactly_once_through_sigkill_and_a_replay(
        tmp_path: Path) -> None:
    mapped = {k: EXAMPLE[k] for k in ("columns", "children", "indexes")}
    h = Harness(tmp_path, partitions=4, event_types={"order": mapped})
    total = 50_000
    try:
        h.migrate()
        acked: list[Acked] = []
        producer = threading.Thread(target=publish_rich, args=(h, total, acked))
        producer.start()
        a, b = h.start("a"), h.start("b")
        h.wait_for("SELECT count(*) > 15000 FROM orders", True, timeout=180, alive=[a, b])
        b.send_signal(signal.SIGKILL)  # mid-run, with events still arriving
        assert b.wait(10) == -signal.SIGKILL
        b2 = h.start("b2")
        producer.join(timeout=240)
        assert not producer.is_alive()
        assert len(acked) == total
        h.wait_for("SELECT count(*) FROM orders", total, timeout=240, alive=[a, b2])
        for proc in (a, b2):
            proc.send_signal(signal.SIGTERM)
        assert (a.wait(60), b2.wait(60)) == (0, 0)

        want_orders, want_items = order_model(acked)
        got_orders, got_items = stored(h)
        assert got_orders.keys() == want_orders.keys()
        wrong = {(c, repr(got_orders[i].get(c)), repr(v)) for i, row in want_orders.items()
                 for c, v in row.items() if got_orders[i].get(c) != v}
        assert not wrong, sorted(wrong)[:5]
        assert got_items == want_items
        lines = h.scalar("SELECT sum(lines) FROM items_per_minute")
        assert lines == len(want_items)
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0

        # Every event again from the earliest offsets: nothing changes, rollups included.
        assert h.weir("offsets", "rewind", "--to-earliest", "--execute").returncode == 0
        again = h.weir("run", "--until-caught-up", timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert stored(h) == (got_orders, got_items)
        assert h.scalar("SELECT sum(lines) FROM items_per_minute") == lines
    finally:
        h.cleanup()


def test_the_kafka_key_as_a_column_is_the_upsert_key(tmp_path: Path) -> None:
    """A compacted topic whose events do not repeat their key: the key itself, as a mapped
    column, keys the upsert table, its tombstones and its children."""
    h = cart_harness(tmp_path)
    h.topics["by_key"] = h.topics["cart"].replace("carts", "keyed_carts")

    def add(config: dict[str, Any]) -> None:
        config["event_types"]["by_key"] = {
            **config["event_types"]["cart"], "table": "keyed_carts", "key_field": None,
            "upsert_key": ["cart_key"],
            "columns": [{"name": "cart_key", "source": "key", "type": "text"}],
            "children": [{"table": "keyed_lines", "path": "lines", "index_column": "line_no",
                          "columns": LINES}]}
        config["topics"].append({"name": h.topics["by_key"], "event_type": "by_key"})
    h.rewrite(add)
    try:
        h.migrate()
        values: list[bytes | None] = [
            cart("x", "open", [line("k1a", 1), line("k1b", 2)]),
            cart("x", "open", [line("k2a", 1)]),
            cart("x", "paid", [line("k1c", 3)]),
            None,  # a tombstone of k2: its row and its lines go
            cart("x", "open", [line("nk", 1)]),  # no key: no row to key it by
        ]
        keys: list[bytes | None] = [b"k1", b"k2", b"k1", b"k2", None]
        asyncio.run(publish(h, h.topics["by_key"], values, keys))  # type: ignore[arg-type]
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        assert [tuple(r) for r in h.sql("SELECT cart_key, status FROM keyed_carts")] == [
            ("k1", "paid")]
        assert [tuple(r) for r in h.sql(
            "SELECT cart_key, line_no, sku FROM keyed_lines ORDER BY 1, 2")] == [
            ("k1", 0, "k1c")]
        [letter] = h.sql("SELECT reason, error FROM weir_dead_letters")
        assert letter["reason"] == "conversion_error"
        assert "field 'cart_key': part of the upsert key is absent" in letter["error"]
    finally:
        h.cleanup()


def test_a_child_table_and_its_new_columns_migrate_additively(tmp_path: Path) -> None:
    """A child table added to a table with rows is made (empty: earlier events are not
    exploded); an item column added later is added by `weir migrate`, shown first by
    --dry-run, and filled for the events after it."""
    h = Harness(tmp_path, partitions=2)
    try:
        h.migrate()
        h.produce(300, "-t", "order")
        assert h.weir("run", "--until-caught-up", timeout=240).returncode == 0
        first = {**ITEMS, "columns": ITEMS["columns"][:2], "rollups": [], "indexes": []}
        h.rewrite(lambda c: c["event_types"]["order"].update(children=[first]))
        plan = h.weir("migrate", "--dry-run")
        assert plan.returncode == 0, plan.stderr
        assert 'CREATE TABLE IF NOT EXISTS "' + h.schema + '"."order_items"' in plan.stdout
        h.migrate()
        assert h.scalar("SELECT count(*) FROM order_items") == 0
        h.produce(300, "-t", "order", "--seed", "3")
        assert h.weir("run", "--until-caught-up", timeout=240).returncode == 0
        assert h.scalar("SELECT count(*) FROM order_items WHERE qty IS NULL") == 0
        before = h.scalar("SELECT count(*) FROM order_items")
        assert before > 300

        h.rewrite(lambda c: c["event_types"]["order"].update(children=[{**first, "columns": [
            *first["columns"], {"name": "price", "path": "price", "type": "numeric"}]}]))
        plan = h.weir("migrate", "--dry-run")
        assert f'ALTER TABLE "{h.schema}"."order_items" ADD COLUMN IF NOT EXISTS "price" ' \
               "numeric" in plan.stdout
        run = h.weir("run", "--until-caught-up", timeout=60)  # behind: refused until then
        assert run.returncode != 0
        assert "order_items" in run.stderr
        h.migrate()
        h.produce(300, "-t", "order", "--seed", "4")
        assert h.weir("run", "--until-caught-up", timeout=240).returncode == 0
        assert h.scalar("SELECT count(*) FROM order_items WHERE price IS NULL") == before
        assert h.scalar("SELECT count(*) FROM order_items WHERE price IS NOT NULL") > 300
    finally:
        h.cleanup()


def test_an_item_the_child_table_refuses_is_its_events_dead_letter(tmp_path: Path) -> None:
    """What only PostgreSQL refuses (an item's sku too large for the child's b-tree index
    row) isolates that one event, its order and items together, as a rejected_by_table
    dead letter; every other order and its items land."""
    h = Harness(tmp_path, partitions=2)
    try:
        h.rewrite(lambda c: c["event_types"]["order"].update(children=[ITEMS]))
        h.migrate()
        sample = SampleEvents(seed=5)
        events = [sample.make("order")[1] for _ in range(60)]
        # Random text does not compress: its index row is past PostgreSQL's ~2.7 kB limit.
        huge = "".join(random.Random(1).choices("abcdefghijklmnopqrstuvwxyz0123456789", k=9000))
        events[30]["items"][0]["sku"] = huge
        asyncio.run(publish(h, h.topics["order"], [orjson.dumps(e) for e in events],
                            [e["customer_id"].encode() for e in events]))
        done = h.weir("run", "--until-caught-up", timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        [letter] = h.sql("SELECT reason, error, value FROM weir_dead_letters")
        assert letter["reason"] == "rejected_by_table"
        assert "order_items" in letter["error"] or "index row" in letter["error"]
        assert orjson.loads(letter["value"])["event_id"] == events[30]["event_id"]
        assert h.scalar("SELECT count(*) FROM orders") == 59
        assert h.scalar("SELECT count(*) FROM order_items") == sum(
            len(e["items"]) for i, e in enumerate(events) if i != 30)
    finally:
        h.cleanup()


def test_the_runtime_role_replaces_and_deletes_child_rows(tmp_path: Path) -> None:
    """Under the least-privilege roles (scripts/pg-roles.sh): the runtime role's deletes —
    an upsert's replaced items, a tombstone's row and items — are granted, so nothing
    stalls."""
    h = cart_harness(tmp_path)
    with two_roles(h) as (migrator, runtime, suffix):
        as_role(h, migrator, "m-" + suffix)
        h.migrate()
        asyncio.run(publish(h, h.topics["cart"], [
            cart("a", "open", [line("a1", 1), line("a2", 2)]), cart("b", "open", [line("b1", 1)]),
            cart("a", "paid", [line("a3", 3)])], [b"a", b"b", b"a"]))
        asyncio.run(publish(h, h.topics["cart"], [None], [b"b"]))  # type: ignore[list-item]
        as_role(h, runtime, "r-" + suffix)
        done = h.weir("run", "--until-caught-up", timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert lines_of(h, "carts_lines") == {"a": [(0, "a3", 3, None)]}
        assert h.scalar("SELECT count(*) FROM carts") == 1
