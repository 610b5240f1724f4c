"""Child tables through the real pipeline: an array of each event as rows of its own table.

Against the real Kafka and PostgreSQL:

- the example order's line items as ``order_items`` (an insert table, partitioned by day,
  with a rollup of the items): every order's items are exactly its rows, the rollup equals
  the items, and a replay from the earliest offsets changes nothing;
- a cart, an upsert table keyed by the Kafka key: an update with fewer items leaves exactly
  the new items, a tombstone removes them, an older event replayed changes nothing, and
  with ``update_mode: merge`` an event without the array keeps the stored items;
- each bad array is a dead letter with its reason and Weir goes on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Harness
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
