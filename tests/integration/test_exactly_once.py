"""Exactly once through SIGKILL, and resume after a clean stop, on the real servers.

The checker follows the acknowledgement log of the producer (what Kafka really accepted):
L nothing lost, D nothing duplicated, O per-key order kept, C stored offsets never pass
what is written.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

from tests.integration.conftest import ROWS, Harness

ORDER_CHECK = """
SELECT count(*) FROM (
  SELECT kafka_offset, lag(kafka_offset) OVER (PARTITION BY {key} ORDER BY seq) AS prev,
         seq, lag(seq) OVER (PARTITION BY {key} ORDER BY seq) AS prev_seq
  FROM {table}) x
WHERE prev >= kafka_offset OR prev_seq = seq
"""


def check_exactly_once(h: Harness) -> None:
    acks = h.acks()
    produced = Counter(a["topic"] for a in acks)
    for event_type, table, key in (("order", "orders", "customer_id"),
                                   ("page_view", "page_views", "user_id")):
        expected = produced[h.topics[event_type]]
        total, distinct = h.sql(f"SELECT count(*), count(DISTINCT event_id) FROM {table}")[0]
        assert total == expected, f"{table}: {total} rows for {expected} events (L/D)"
        assert distinct == expected, f"{table}: duplicates (D)"
        assert h.scalar(ORDER_CHECK.format(key=key, table=table)) == 0, f"{table}: order (O)"
    # L, by identity: every acknowledged event id is in its table.
    ids = [a["event_id"] for a in acks]
    found = h.scalar(
        "SELECT count(*) FROM (SELECT event_id::text AS id FROM orders UNION ALL "
        "SELECT event_id::text FROM page_views) t WHERE id = ANY($1::text[])", ids)
    assert found == len(ids)
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    # C: the stored resume point of each partition is exactly past its last written record.
    written = {(r["kafka_topic"], r["kafka_partition"]): r["last"] for r in h.sql(
        "SELECT kafka_topic, kafka_partition, max(kafka_offset) + 1 AS last FROM ("
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM orders UNION ALL "
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM page_views) t GROUP BY 1, 2")}
    stored = {(r["topic"], r["partition"]): r["next_offset"] for r in h.sql(
        "SELECT topic, partition, max(next_offset) AS next_offset FROM weir_offsets "
        "GROUP BY 1, 2")}
    assert stored == written




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
