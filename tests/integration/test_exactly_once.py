"""Exactly once through SIGKILL, and resume after a clean stop, on the real servers.

The checker follows the acknowledgement log of the producer (what Kafka really accepted):
L nothing lost, D nothing duplicated, O per-key order kept, C stored offsets never pass
what is written.

D is checked where a duplicate could really appear. The tables' primary key and ``ON
CONFLICT DO NOTHING`` keep an event's row single whatever Weir does, so a row count says
nothing of it; instead: each table holds exactly the acknowledged records, by (topic,
partition, offset) and the event id acknowledged there; the rollup, which adds up what
each batch's insert returned and has no key to absorb a replay, counts each row once; and
a process that stopped cleanly consumed exactly the new events.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import ROWS, Harness

ORDER_CHECK = """
SELECT count(*) FROM (
  SELECT kafka_offset, lag(kafka_offset) OVER (PARTITION BY {key} ORDER BY seq) AS prev,
         seq, lag(seq) OVER (PARTITION BY {key} ORDER BY seq) AS prev_seq
  FROM {table}) x
WHERE prev >= kafka_offset OR prev_seq = seq
"""

# The example config's rollup of orders (config/example.yaml).
ROLLUP = {"table": "orders_per_minute", "bucket": "minute", "count_column": "orders",
          "sums": ["amount"]}
# Minutes where the rollup and the rows disagree, in either direction.
ROLLUP_CHECK = """
SELECT coalesce(r.minute, t.minute) AS minute, r.orders, t.orders AS rows,
       r.amount, t.amount AS rows_amount
FROM orders_per_minute r FULL JOIN (
  SELECT date_trunc('minute', event_time, 'UTC') AS minute, count(*) AS orders,
         sum(amount) AS amount
  FROM orders GROUP BY 1) t ON r.minute = t.minute
WHERE r.orders IS DISTINCT FROM t.orders OR r.amount IS DISTINCT FROM t.amount
ORDER BY 1
"""


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """The usual harness, with the example's rollup of orders."""
    h = Harness(tmp_path, event_types={"order": {"rollups": [ROLLUP]}})
    h.migrate()
    try:
        yield h
    finally:
        h.cleanup()


def check_exactly_once(h: Harness) -> None:
    acks = h.acks()
    for event_type, table, key in (("order", "orders", "customer_id"),
                                   ("page_view", "page_views", "user_id")):
        # L and D by identity: the table holds each acknowledged record once, at its own
        # coordinates, with the event id acknowledged there; and nothing else.
        acked = Counter((a["topic"], a["partition"], a["offset"], a["event_id"])
                        for a in acks if a["topic"] == h.topics[event_type])
        stored = Counter(tuple(r) for r in h.sql(
            "SELECT kafka_topic, kafka_partition, kafka_offset, event_id::text "
            f"FROM {table}"))
        assert sum(acked.values()) > 0, f"{table}: nothing acknowledged"
        assert stored == acked, (
            f"{table}: {sum(stored.values())} rows for {sum(acked.values())} events; "
            f"{sum((acked - stored).values())} missing (L), "
            f"{sum((stored - acked).values())} not acknowledged or repeated (D), e.g. "
            f"{list((acked - stored) + (stored - acked))[:3]}")
        assert h.scalar(ORDER_CHECK.format(key=key, table=table)) == 0, f"{table}: order (O)"
    # D in the rollup, where the harness declares it (this module's tests do): each minute
    # counts, and sums, each of its rows once.
    if ROLLUP in yaml.safe_load(h.config.read_text())["event_types"]["order"].get(
            "rollups", []):
        off = [dict(r) for r in h.sql(ROLLUP_CHECK)]
        assert off == [], f"orders_per_minute disagrees with the rows (D): {off[:5]}"
        assert h.scalar("SELECT coalesce(sum(orders), 0) FROM orders_per_minute") == sum(
            a["topic"] == h.topics["order"] for a in acks)
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    # C: the stored resume point of each partition is exactly past its last written record.
    written = {(r["kafka_topic"], r["kafka_partition"]): r["last"] for r in h.sql(
        "SELECT kafka_topic, kafka_partition, max(kafka_offset) + 1 AS last FROM ("
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM orders UNION ALL "
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM page_views) t GROUP BY 1, 2")}
    stored_offsets = {(r["topic"], r["partition"]): r["next_offset"] for r in h.sql(
        "SELECT topic, partition, max(next_offset) AS next_offset FROM weir_offsets "
        "GROUP BY 1, 2")}
    assert stored_offsets == written


def kill_one_of_two_and_restart(h: Harness, total: int, kill_after: int,
                                *produce_args: str, produce_timeout: float = 240) -> None:
    """Produce ``total`` events while two processes write; SIGKILL one once ``kill_after``
    rows are written, start a replacement, and stop both cleanly once all are written."""
    producer = threading.Thread(target=h.produce, args=(total, *produce_args))
    producer.start()
    a = h.start("a")
    b = h.start("b")
    # Kill one process once a good share is written, while events are still arriving.
    h.wait_for(f"{ROWS} > {kill_after}", True, timeout=180, alive=[a, b])
    b.send_signal(signal.SIGKILL)
    assert b.wait(10) == -signal.SIGKILL
    time.sleep(2)
    b2 = h.start("b2")
    producer.join(timeout=produce_timeout)
    assert not producer.is_alive()
    h.wait_for(ROWS, total, timeout=240, alive=[a, b2])
    # Let the last batches' offsets land, then stop both cleanly.
    for proc in (a, b2):
        proc.send_signal(signal.SIGTERM)
    assert a.wait(60) == 0
    assert b2.wait(60) == 0


def test_two_processes_one_killed_mid_run(harness: Harness) -> None:
    kill_one_of_two_and_restart(harness, 100_000, 25_000, "--rate", "12000")
    check_exactly_once(harness)
    # Through the rebalances the kill caused, aiokafka's own lines are JSON too.
    assert [(name, harness.not_json(name)) for name in ("a", "b2")] == [("a", []), ("b2", [])]


def consumed_by(h: Harness, name: str) -> int:
    stopped = [line for line in h.log_lines(name) if line.get("event") == "stopped cleanly"]
    assert stopped, f"{name} did not log a clean stop"
    return int(stopped[-1]["consumed"])


def test_restart_after_clean_stop_resumes_exactly(harness: Harness) -> None:
    h = harness
    h.produce(6_000)
    first = h.start("first", "--until-caught-up")
    assert first.wait(120) == 0
    assert consumed_by(h, "first") == 6_000
    check_exactly_once(h)
    h.produce(4_000, "--seed", "8", "--seq-base", "1000000")
    second = h.start("second", "--until-caught-up")
    assert second.wait(120) == 0
    # Exactly the new events were read: the stored offsets were the resume point.
    assert consumed_by(h, "second") == 4_000
    check_exactly_once(h)
