"""`weir offsets show|rewind` on the real servers: a window of the topic read again, safely.

A rewind to the middle of the topic, then a run: the insert table keeps its count (its
unique key absorbs the replay), the rollup is unchanged (it counts only rows really
inserted), and an upsert table whose newer rows were lost is back at the latest versions.
While the group has a live member, the rewind is refused.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.integration.conftest import Harness

ROLLUP = {"table": "orders_per_minute", "bucket": "minute", "count_column": "orders",
          "sums": ["amount"]}


def show(h: Harness) -> dict[tuple[str, int], dict[str, Any]]:
    result = h.weir("offsets", "show", "--json")
    assert result.returncode == 0, result.stderr
    return {(r["topic"], r["partition"]): r for r in orjson.loads(result.stdout)}


def offsets(h: Harness) -> dict[tuple[str, int], tuple[int, int]]:
    """Stored and committed offset per partition (not when they were written)."""
    return {tp: (p["stored"], p["committed"]) for tp, p in show(h).items()}


def caught_up(h: Harness, name: str) -> None:
    run = h.start(name, "--until-caught-up")
    assert run.wait(240) == 0, h.why_exited(run)


def test_rewind_to_a_time_replays_the_window_exactly_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, partitions=4, event_types={
        "order": {"rollups": [ROLLUP]},
        "page_view": {"write_mode": "upsert", "upsert_key": ["user_id"]}})
    h.migrate()
    try:
        h.produce(10_000)
        time.sleep(1.5)
        middle = datetime.now(UTC)
        time.sleep(1.5)
        h.produce(10_000, "--seq-base", "100000")
        caught_up(h, "first")
        orders = h.scalar("SELECT count(*) FROM orders")
        rollup = h.sql("SELECT minute, orders, amount FROM orders_per_minute ORDER BY 1")
        latest = h.sql("SELECT user_id, kafka_offset FROM page_views ORDER BY 1")
        assert all(p["stored"] == p["log_end"] == p["committed"] for p in show(h).values())
        before = offsets(h)

        # A live member: refused, and nothing moves.
        live = h.start("live")
        deadline = time.monotonic() + 60
        refused = None
        while time.monotonic() < deadline:
            refused = h.weir("offsets", "rewind", "--to-time", middle.isoformat(), "--execute")
            if refused.returncode != 0:
                break
            time.sleep(1)
        assert refused is not None
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "live members" in refused.stderr
        live.send_signal(signal.SIGTERM)
        assert live.wait(60) == 0
        assert offsets(h) == before

        # Newer versions lost (a table restored from an older backup).
        lost = h.scalar("WITH gone AS (DELETE FROM page_views WHERE kafka_timestamp >= $1 "
                        "RETURNING 1) SELECT count(*) FROM gone", middle)
        assert lost > 0

        dry = h.weir("offsets", "rewind", "--to-time", middle.isoformat())
        assert dry.returncode == 0, dry.stderr
        assert "dry run" in dry.stdout
        assert offsets(h) == before
        for _ in range(2):  # idempotent: the second time changes nothing more
            moved = h.weir("offsets", "rewind", "--to-time", middle.isoformat(), "--execute")
            assert moved.returncode == 0, moved.stderr
            after = show(h)
            for tp, p in after.items():
                assert p["log_start"] < p["stored"] < p["log_end"], (tp, p)
                assert p["committed"] == p["stored"]
        first_after = h.scalar("SELECT min(kafka_offset) FROM orders WHERE kafka_timestamp >= $1 "
                               "AND kafka_partition = 0", middle)
        assert after[(h.topics["order"], 0)]["stored"] == first_after

        caught_up(h, "replay")
        stopped = [line for line in h.log_lines("replay") if line.get("event") == "stopped cleanly"]
        assert stopped[-1]["consumed"] > 0  # the window was read again
        assert h.scalar("SELECT count(*) FROM orders") == orders
        assert h.sql("SELECT minute, orders, amount FROM orders_per_minute ORDER BY 1") == rollup
        assert h.sql("SELECT user_id, kafka_offset FROM page_views ORDER BY 1") == latest
        assert all(p["stored"] == p["log_end"] for p in show(h).values())
    finally:
        h.cleanup()


def test_rewind_refuses_an_ambiguous_target(harness: Harness) -> None:
    result = harness.weir("offsets", "rewind", "--to-earliest", "--to-latest")
    assert result.returncode == 2
    assert "exactly one of" in result.stderr


def test_rewind_to_a_time_before_1970_is_the_log_start(harness: Harness) -> None:
    # Kafka holds nothing before the epoch and its lookup refuses a negative time: the
    # first offset at or after 1969-07-20 is the log start, as for 2000-01-01.
    h = harness
    h.produce(200)
    caught_up(h, "first")
    plans = {}
    for when in ("1969-07-20", "2000-01-01", "0001-01-01T00:00:00+00:00"):
        result = h.weir("offsets", "rewind", "--to-time", when)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        plans[when] = result.stdout
    earliest = h.weir("offsets", "rewind", "--to-earliest")
    assert earliest.returncode == 0, earliest.stderr
    assert plans["1969-07-20"] == plans["2000-01-01"] == plans[
        "0001-01-01T00:00:00+00:00"] == earliest.stdout
    moved = h.weir("offsets", "rewind", "--to-time", "1969-07-20", "--execute")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert all(p["stored"] == p["log_start"] for p in show(h).values())
