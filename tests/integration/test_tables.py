"""Tables analysts can trust (issue 6), on the real servers: time partitions made ahead and on
demand, retention, pruning, schema evolution under load, refused changes, and a rollup kept
exactly once through SIGKILL."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.integration.conftest import ROOT, ROWS, Harness
from tests.integration.test_exactly_once import check_exactly_once, kill_one_of_two_and_restart


def reconfigure(h: Harness, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the harness's config file in place (the next `weir` command reads it)."""
    config = yaml.safe_load(h.config.read_text())
    change(config)
    h.config.write_text(yaml.safe_dump(config))


def order_schema(tmp: Path, version: int, change: Callable[[dict[str, Any]], None]) -> Path:
    """A version of the order contract, derived from the shipped one."""
    schema = orjson.loads((ROOT / "schemas/order.v1.json").read_bytes())
    schema["version"] = version
    schema["$id"] = f"weir:order:v{version}"
    change(schema)
    path = tmp / f"order.v{version}.json"
    path.write_bytes(orjson.dumps(schema))
    return path


def use_schema(h: Harness, path: Path) -> None:
    reconfigure(h, lambda c: c["event_types"]["order"].update(schema_file=str(path)))


def partition_of_each_row_mismatches(h: Harness) -> int:
    return int(h.scalar(
        "SELECT count(*) FROM orders WHERE tableoid::regclass::text "
        "<> 'orders_p' || to_char(event_time AT TIME ZONE 'UTC', 'YYYYMMDD')"))


ITEMS_OF_ORDERS = ("SELECT (SELECT count(*) FROM order_items), "
                   "(SELECT coalesce(sum(jsonb_array_length(items)), 0) FROM orders)")
CHILD_PARTITIONS = ("SELECT count(*) FROM pg_inherits WHERE inhparent = "
                    "'order_items'::regclass")


def test_partitions_by_day_pruning_and_retention(tmp_path: Path) -> None:
    """The example's order_items (child rows) are partitioned with their orders: made,
    dropped past retention and defaulted alike."""
    example = yaml.safe_load((ROOT / "config/example.yaml").read_text())["event_types"]["order"]
    h = Harness(tmp_path, event_types={"order": {"partitioning": {"premake": 2},
                                                 "children": example["children"]}})
    h.migrate()
    try:
        # Event times spread over the last six days: most rows need a partition on demand.
        h.produce(3000, "--spread-days", "6")
        first = h.start("first", "--until-caught-up")
        assert first.wait(180) == 0
        assert h.scalar("SELECT count(*) FROM orders") == 1500
        assert partition_of_each_row_mismatches(h) == 0
        assert h.scalar("SELECT count(DISTINCT tableoid) FROM orders") >= 6
        assert h.scalar("SELECT count(*) FROM orders_default") == 0
        assert h.scalar(CHILD_PARTITIONS) == h.scalar(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders'::regclass")
        items, expected = h.sql(ITEMS_OF_ORDERS)[0]
        assert items == expected > 1500
        # Made ahead of time: today's partition and the next two days'.
        ahead = h.scalar(
            "SELECT count(*) FROM generate_series(0, 2) g WHERE to_regclass('orders_p' || "
            "to_char((now() AT TIME ZONE 'UTC') + g * interval '1 day', 'YYYYMMDD')) "
            "IS NOT NULL")
        assert ahead == 3

        # A one-day query reads one partition.
        day = h.scalar("SELECT date_trunc('day', now() - interval '2 days', 'UTC')")
        plan = "\n".join(r[0] for r in h.sql(
            f"EXPLAIN SELECT count(*) FROM orders WHERE event_time >= '{day.isoformat()}' "
            f"AND event_time < '{(day + timedelta(days=1)).isoformat()}'"))
        scanned = set(re.findall(r"(?<!Bitmap Index )Scan on (\w+)", plan))
        assert scanned == {f"orders_p{day:%Y%m%d}"}, plan
        assert "Subplans Removed" not in plan  # pruned when planning, not at run time

        # Retention of three days, set while Weir runs: migrate rewrites the drop function,
        # and the running Weir's maintenance task (every second here) drops the old days.
        cutoff = "now() - interval '3 days'"
        kept = h.scalar(f"SELECT count(*) FROM orders WHERE event_time >= "
                        f"date_trunc('day', {cutoff}, 'UTC')")
        expired = (
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'orders'::regclass AND c.relname <> 'orders_default' "
            f"AND c.relname < 'orders_p' || to_char(date_trunc('day', {cutoff}, 'UTC') "
            "AT TIME ZONE 'UTC', 'YYYYMMDD')")
        assert h.scalar(expired) >= 2
        h.env["WEIR_POSTGRES__PARTITION_MAINTENANCE_S"] = "1"
        live = h.start("live")
        # The start pass (still without retention) is behind it once the consumer runs.
        deadline = time.monotonic() + 60
        while not any(line.get("event") == "consumer started" for line in h.log_lines("live")):
            assert live.poll() is None, "weir exited early"
            assert time.monotonic() < deadline, "weir did not start its consumer"
            time.sleep(0.2)
        assert h.scalar(expired) >= 2
        reconfigure(h, lambda c: c["event_types"]["order"]["partitioning"].update(
            retention_days=3))
        h.migrate()
        h.wait_for(expired, 0, timeout=60, alive=[live])
        live.send_signal(signal.SIGTERM)
        assert live.wait(60) == 0
        del h.env["WEIR_POSTGRES__PARTITION_MAINTENANCE_S"]
        assert 0 < h.scalar("SELECT count(*) FROM orders") == kept
        # The items of the dropped days went with them, partition by partition.
        assert h.scalar(expired.replace("'orders'::regclass", "'order_items'::regclass")
                        .replace("'orders_default'", "'order_items_default'")
                        .replace("'orders_p'", "'order_items_p'")) == 0
        items, expected = h.sql(ITEMS_OF_ORDERS)[0]
        assert items == expected

        # Late events past retention land in the default partition, not in a new partition
        # that would be dropped at once; the next maintenance pass deletes them.
        h.produce(1000, "--spread-days", "6", "--seed", "11", "--seq-base", "100000")
        third = h.start("third", "--until-caught-up")
        assert third.wait(180) == 0
        late = h.scalar("SELECT count(*) FROM orders_default")
        assert late > 0
        assert h.scalar(f"SELECT count(*) FROM orders_default WHERE event_time >= {cutoff}") == 0
        assert partition_of_each_row_mismatches(h) == late
        assert h.scalar("SELECT count(*) FROM order_items_default") > 0  # theirs, too
        fourth = h.start("fourth", "--until-caught-up")
        assert fourth.wait(180) == 0
        assert h.scalar("SELECT count(*) FROM orders_default") == 0
        assert h.scalar("SELECT count(*) FROM order_items_default") == 0
    finally:
        h.cleanup()


def test_incompatible_change_is_refused_with_the_table_and_column(harness: Harness) -> None:
    h = harness

    def incompatible(schema: dict[str, Any]) -> None:
        schema["properties"]["amount"] = {"type": "string"}
        schema["properties"]["coupon"] = {"type": "string"}
        schema["required"].append("coupon")

    use_schema(h, order_schema(h.tmp, 2, incompatible))
    result = h.weir("migrate")
    assert result.returncode == 1
    assert "table orders, column amount: type changes from numeric to text" in result.stderr
    assert "table orders, column coupon: a new required field" in result.stderr
    # Nor does Weir start writing into a table its contract no longer matches.
    run = h.weir("run", "--until-caught-up", timeout=120)
    assert run.returncode == 1
    assert "tables are behind their contracts: run `weir migrate` first" in run.stderr
    assert "column amount: type changes" in run.stderr
    # Nothing was changed.
    assert h.scalar("SELECT count(*) FROM information_schema.columns WHERE "
                    "table_schema = $1 AND table_name = 'orders' AND column_name = 'coupon'",
                    h.schema) == 0


def test_new_optional_field_under_continuous_load(tmp_path: Path) -> None:
    # v1 lacks `channel`, which the sample producer sends all along: under v1 it is an
    # unknown extra field, kept in `raw`; v2 adds it, and it gets its own column.
    without_channel = order_schema(tmp_path, 1, lambda s: s["properties"].pop("channel"))
    with_channel = order_schema(tmp_path, 2, lambda s: None)
    h = Harness(tmp_path, event_types={"order": {"schema_file": str(without_channel)}})
    h.migrate()
    try:
        total = 60_000
        producer = threading.Thread(target=h.produce, args=(total, "--rate", "4000"))
        producer.start()
        old = h.start("v1")
        h.wait_for(f"{ROWS} > 8000", True, timeout=180, alive=[old])
        use_schema(h, with_channel)
        h.migrate()  # while v1 writes: a new nullable column, no rewrite, no long lock
        h.wait_for(f"{ROWS} > 16000", True, timeout=180, alive=[old])
        new = h.start("v2")  # a rolling restart: v2 joins, then v1 leaves
        h.wait_for("SELECT count(*) > 0 FROM orders WHERE channel IS NOT NULL", True,
                   timeout=180, alive=[old, new])
        old.send_signal(signal.SIGTERM)
        assert old.wait(60) == 0
        v1_gone = datetime.now(UTC)
        producer.join(timeout=300)
        assert not producer.is_alive()
        h.wait_for(ROWS, total, timeout=240, alive=[new])
        new.send_signal(signal.SIGTERM)
        assert new.wait(60) == 0
        check_exactly_once(h)
        for name in ("v1", "v2"):
            # Weir's own lines: aiokafka logs its internal retries (a partition leader not
            # elected yet on a new topic) at error level, and retries them itself.
            errors = [line for line in h.log_lines(name) if "logger" not in line
                      and (line.get("level") in ("error", "critical")
                           or line.get("event") == "retrying")]
            assert errors == [], errors
        after = h.sql("SELECT count(*) AS n, count(channel) AS filled FROM orders "
                      "WHERE occurred_at > $1", v1_gone)[0]
        assert after["n"] > 0
        assert after["filled"] == after["n"]
        # Before v2, the field was in `raw` all along; where the column is set, they agree.
        assert h.scalar("SELECT count(*) FROM orders WHERE raw->>'channel' IS NULL "
                        "OR channel <> raw->>'channel'") == 0
        assert h.scalar("SELECT count(*) FROM orders WHERE channel IS NULL") > 0
    finally:
        h.cleanup()


ROLLUP_MISMATCHES = """
SELECT count(*) FROM (
  SELECT date_trunc('minute', event_time, 'UTC') AS minute, count(*) AS orders,
         sum(amount) AS amount
  FROM orders GROUP BY 1) d
FULL JOIN orders_per_minute r USING (minute)
WHERE r.orders IS DISTINCT FROM d.orders OR r.amount IS DISTINCT FROM d.amount
"""


def test_rollup_matches_the_rows_after_sigkill(tmp_path: Path) -> None:
    rollup = {"table": "orders_per_minute", "bucket": "minute", "count_column": "orders",
              "sums": ["amount"]}
    h = Harness(tmp_path, event_types={"order": {"rollups": [rollup]}})
    h.migrate()
    try:
        # Event times over the last half hour: many buckets, each updated by many batches.
        kill_one_of_two_and_restart(h, 60_000, 15_000, "--rate", "8000", "--spread-days",
                                    "0.02", produce_timeout=300)
        check_exactly_once(h)
        assert h.scalar("SELECT count(*) FROM orders_per_minute") > 20
        assert h.scalar(ROLLUP_MISMATCHES) == 0
        assert h.scalar("SELECT sum(orders) FROM orders_per_minute") == \
            h.scalar("SELECT count(*) FROM orders")
    finally:
        h.cleanup()


def test_the_analysts_queries_run(tmp_path: Path) -> None:
    """Every SQL block of docs/analysts.md runs on the example tables (docs stay true): the
    example's orders as config/example.yaml maps them (columns, child rows, rollups and
    indexes), from the rich sample orders."""
    example = yaml.safe_load((ROOT / "config/example.yaml").read_text())["event_types"]["order"]
    mapped = {k: example[k] for k in ("rollups", "indexes", "columns", "children")}
    h = Harness(tmp_path, event_types={"order": mapped})
    h.migrate()
    try:
        h.produce(2000, "--spread-days", "2", "--rich")
        run = h.start("run", "--until-caught-up")
        assert run.wait(180) == 0
        # The declared index is on the parent and on every partition, even those made later.
        partitions, indexed = h.sql(
            "SELECT (SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders'::regclass), "
            "(SELECT count(*) FROM pg_inherits WHERE inhparent = "
            "'orders_customer_id_event_time_btree_idx'::regclass)")[0]
        assert partitions >= 3
        assert indexed == partitions
        text = (ROOT / "docs/analysts.md").read_text()
        blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
        assert len(blocks) >= 10
        results = [h.sql(block) for block in blocks if not block.startswith("SET ")]
        # The first ones always see data.
        assert all(len(rows) > 0 for rows in results[:6]), [len(rows) for rows in results]
        # The mapped columns and the child rows are filled from the rich orders.
        assert h.scalar("SELECT count(*) FROM orders WHERE ship_country IS NOT NULL AND "
                        "tenant IS NOT NULL AND placed_at IS NOT NULL") > 500
        assert h.scalar("SELECT count(*) FROM order_items") > h.scalar(
            "SELECT count(*) FROM orders")
        disagree = next(r for b, r in zip(blocks[1:], results, strict=True)
                        if "minutes_that_disagree" in b)
        assert disagree[0][0] == 0
    finally:
        h.cleanup()
