"""Prometheus metrics. Names follow the conventions: ``weir_`` prefix, base units, ``_total``.

Labels are bounded: topic, table, reason, lane; never a key or an offset.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import Counter as CountOf
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from processor.core.records import Block, DeadLetter, Item, Row

# `_created` series double every counter and histogram for a start time nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]


EVENTS_CONSUMED = Counter(
    "weir_events_consumed_total", "Records fetched from Kafka.", ["topic"]
)
EVENTS_WRITTEN = Counter(
    "weir_events_written_total", "Events committed to their target table.", ["event_type"]
)
DELETES_WRITTEN = Counter(
    "weir_deletes_written_total",
    "Records committed that delete their key's row: tombstones, Debezium deletes.",
    ["event_type"],
)
MIRROR_LAG = Gauge(
    "weir_mirror_lag_seconds",
    "A mirror's lag behind its source: at its latest commit, the age of the latest change "
    "it wrote, from the change's commit time at the source (Debezium's source.ts_ms).",
    ["event_type"],
)
MIRROR_TOPICS = Gauge(
    "weir_mirror_topics",
    "Change topics a cdc.mirrors pattern matches, by state: mirrored; waiting (no change "
    "with a schema yet, or no primary key); skipped (a table name that cannot be); refused "
    "(a column change the mirror cannot take in place).",
    ["state"],
)
EVENTS_DEAD_LETTERED = Counter(
    "weir_events_dead_lettered_total",
    "Events dead-lettered and committed past, wherever the dead letter is kept.",
    ["topic", "reason"],
)
DEAD_LETTERS_PLACED = Counter(
    "weir_dead_letters_placed_total",
    "Dead letters safely kept, by place: topic, table or spool (a drained spool entry "
    "counts again where it lands).",
    ["place"],
)
SPOOL_ENTRIES = Gauge(
    "weir_dead_letter_spool_entries", "Dead letters waiting in the local spool to be drained."
)
COLUMNAR = Counter(
    "weir_columnar_events_total",
    "Events decoded by the columnar path (a whole fetch's records of a topic at once).",
    ["event_type"],
)
ROW_PATH = Counter(
    "weir_columnar_row_path_total",
    "Events of a columnar event type that took the row path instead, by why.",
    ["event_type", "reason"],
)
EVENTS_FILTERED = Counter(
    "weir_events_filtered_total", "Events a transform dropped on purpose.", ["topic"]
)
BATCH_ROWS = Histogram(
    "weir_batch_rows", "Events per committed batch.",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000),
)
FLUSH_SECONDS = Histogram(
    "weir_batch_flush_seconds", "Time to commit one batch, retries included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ASSIGNED_PARTITIONS = Gauge(
    "weir_assigned_partitions", "Partitions this process owns."
)
PAUSED_PARTITIONS = Gauge(
    "weir_paused_partitions", "Partitions paused because a writer lane is full."
)
PARTITION_PAUSES = Counter(
    "weir_partition_pauses_total", "Times a partition was paused by backpressure."
)
CIRCUIT_STATE = Gauge(
    "weir_circuit_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["circuit"]
)
RETRIES = Counter(
    "weir_retries_total", "Transient failures retried, by operation.", ["operation"]
)
STALLED = Gauge(
    "weir_stalled", "1 while a part of the pipeline is stalled: PostgreSQL refuses all its "
    "work (a privilege, a missing table) until an operator acts.", ["part"],
)
STALLS = Counter(
    "weir_stalls_total", "Times a part of the pipeline entered a stall, by error class.",
    ["part", "error"],
)
REBALANCES = Counter(
    "weir_rebalances_total", "Partition assignments received.",
)


BATCH_BYTES = Histogram(
    "weir_batch_bytes", "Bytes (Kafka values) per committed batch.",
    buckets=(1e3, 1e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7, 2.5e7),
)
END_TO_END_SECONDS = Histogram(
    "weir_end_to_end_latency_seconds",
    "From the Kafka record timestamp to the PostgreSQL commit of its row.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
LAG_RECORDS = Gauge(
    "weir_consumer_lag_records", "Log end offset minus the written watermark.",
    ["topic", "partition"],
)
LAG_SECONDS = Gauge(
    "weir_consumer_lag_seconds", "Age of the oldest fetched record not yet written.",
    ["topic", "partition"],
)
LANE_ROWS = Gauge("weir_lane_rows", "Events waiting in a writer lane.", ["lane"])
LANE_BYTES = Gauge("weir_lane_bytes", "Bytes waiting in a writer lane.", ["lane"])
POOL_IN_USE = Gauge("weir_pg_pool_connections_in_use", "asyncpg pool connections in use.")
READY = Gauge("weir_ready", "1 when /readyz answers ready, else 0 (sampled).")


def total(metric: Counter) -> float:
    """The sum of a counter over all its labels (for the status page)."""
    return sum(sample.value for family in metric.collect() for sample in family.samples
               if sample.name.endswith("_total"))


def by_label(metric: Gauge | Counter, label: str) -> dict[str, float]:
    """A metric's values by one label's value (for the status page); a counter's totals."""
    return {sample.labels[label]: sample.value for family in metric.collect()
            for sample in family.samples
            if label in sample.labels and not sample.name.endswith("_created")}


def observe_many(histogram: Histogram, amounts: list[float]) -> None:
    """``histogram.observe`` of every amount, with one increment per bucket instead of per amount.

    A batch has thousands of rows; observing each took a lock and a bucket search per row,
    about a microsecond, a few per cent of Weir's CPU. The sorted amounts give each bucket's
    count by bisection. (prometheus_client has no bulk observe; tests/unit/test_metrics.py
    checks this against ``observe``.)
    """
    if not amounts:
        return
    amounts.sort()
    below = 0
    for bucket, bound in zip(histogram._buckets, histogram._upper_bounds, strict=True):
        upto = bisect_right(amounts, bound, lo=below)
        if upto > below:
            bucket.inc(upto - below)
        below = upto
    histogram._sum.inc(sum(amounts))


def observe_batch(items: Sequence[Item]) -> None:
    """Count one committed batch by event type and dead-letter reason."""
    BATCH_ROWS.observe(sum(item.rows for item in items))
    BATCH_BYTES.observe(sum(item.nbytes for item in items))
    rows = [item for item in items if isinstance(item, Row)]
    if len(rows) != len(items):
        for item in items:
            if isinstance(item, DeadLetter):
                EVENTS_DEAD_LETTERED.labels(item.topic, item.reason).inc()
    # A mirror's truncate is written by every lane (processor.partition.router): not an
    # event of its table's.
    for event_type, count in CountOf(row.event_type for row in rows
                                     if not row.truncate).items():
        EVENTS_WRITTEN.labels(event_type).inc(count)
    for event_type, count in CountOf(row.event_type for row in rows if row.tombstone).items():
        DELETES_WRITTEN.labels(event_type).inc(count)
    now_ms = time.time() * 1000
    latencies = [max(0.0, (now_ms - row.timestamp_ms) / 1000) for row in rows]
    if len(rows) != len(items):
        for item in items:
            if isinstance(item, Block):
                EVENTS_WRITTEN.labels(item.event_type).inc(item.rows)
                latencies += [max(0.0, (now_ms - ms) / 1000) for ms in item.timestamps_ms]
    observe_many(END_TO_END_SECONDS, latencies)

