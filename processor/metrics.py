"""Prometheus metrics. Names follow the conventions: ``weir_`` prefix, base units, ``_total``.

Labels are bounded: topic, table, reason, lane; never a key or an offset.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from processor.records import Item, Row

EVENTS_CONSUMED = Counter(
    "weir_events_consumed_total", "Records fetched from Kafka.", ["topic"]
)
EVENTS_WRITTEN = Counter(
    "weir_events_written_total", "Events committed to their target table.", ["event_type"]
)
EVENTS_DEAD_LETTERED = Counter(
    "weir_events_dead_lettered_total", "Events committed to the dead-letter table.",
    ["topic", "reason"],
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
REBALANCES = Counter(
    "weir_rebalances_total", "Partition assignments received.",
)


def observe_batch(items: Sequence[Item]) -> None:
    """Count one committed batch by event type and dead-letter reason."""
    BATCH_ROWS.observe(len(items))
    written: dict[str, int] = {}
    for item in items:
        if isinstance(item, Row):
            written[item.event_type] = written.get(item.event_type, 0) + 1
        else:
            EVENTS_DEAD_LETTERED.labels(item.topic, item.reason).inc()
    for event_type, count in written.items():
        EVENTS_WRITTEN.labels(event_type).inc(count)


def serve(host: str, port: int) -> None:
    """Expose ``/metrics`` on a background thread (prometheus-client's own server)."""
    start_http_server(port, addr=host)
