"""Merging the workers' metrics and status pages (``weir run --workers``)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from processor.observe.merge import MetricsMerger, Scrape, failing_checks, merge_status

TEXT = """# HELP weir_events_written_total Events committed to their target table.
# TYPE weir_events_written_total counter
weir_events_written_total{{event_type="order"}} {written}
# HELP weir_batch_rows Events per committed batch.
# TYPE weir_batch_rows histogram
weir_batch_rows_bucket{{le="10.0"}} {batches}
weir_batch_rows_bucket{{le="+Inf"}} {batches}
weir_batch_rows_count {batches}
weir_batch_rows_sum {written}
# HELP weir_lane_rows Events waiting in a writer lane.
# TYPE weir_lane_rows gauge
weir_lane_rows{{lane="0"}} {lane}
"""


def scrape(worker: int, pid: int, written: int, lane: int = 0) -> Scrape:
    return Scrape(worker, pid, TEXT.format(written=written, batches=written // 5, lane=lane))


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


WRITTEN = ("weir_events_written_total", (("event_type", "order"),))
COUNT = ("weir_batch_rows_count", ())


def test_counters_and_histograms_are_summed_gauges_keep_the_worker() -> None:
    merged = samples(MetricsMerger().merge([scrape(0, 10, 100, lane=3), scrape(1, 11, 50)]))
    assert merged[WRITTEN] == 150
    assert merged[COUNT] == 30
    assert merged[("weir_lane_rows", (("lane", "0"), ("worker", "0")))] == 3
    assert merged[("weir_lane_rows", (("lane", "0"), ("worker", "1")))] == 0


def test_a_restarted_worker_does_not_make_the_sum_go_down() -> None:
    merger = MetricsMerger()
    merger.merge([scrape(0, 10, 100), scrape(1, 11, 50)])
    # Worker 1 died: not answering, its last values still count.
    assert samples(merger.merge([scrape(0, 10, 120)]))[WRITTEN] == 170
    # Started again (a new pid) from zero: its old total is carried.
    assert samples(merger.merge([scrape(0, 10, 120), scrape(1, 12, 5)]))[WRITTEN] == 175
    assert samples(merger.merge([scrape(0, 10, 130), scrape(1, 12, 9)]))[WRITTEN] == 189


def test_status_pages_are_merged() -> None:
    def page(partitions: list[int], ready: bool) -> dict[str, object]:
        return {"ready": ready, "partitions": [
            {"topic": "t", "partition": p, "lag": 1, "lag_seconds": 0.5, "paused": False}
            for p in partitions],
            "totals": {"lag": len(partitions), "max_lag_seconds": 0.5 * len(partitions),
                       "written_per_s": 10.0, "dead_letters": 1,
                       "partitions": len(partitions), "paused": 0}}
    merged = merge_status({0: page([1, 3], True), 1: page([0, 2, 4], True)}, [])
    assert [(p["partition"], p["worker"]) for p in merged["partitions"]] == \
        [(0, 1), (1, 0), (2, 1), (3, 0), (4, 1)]
    assert merged["totals"]["partitions"] == 5
    assert merged["totals"]["max_lag_seconds"] == 1.5
    assert merged["ready"] is True
    assert merge_status({0: page([1], True), 1: None}, [])["ready"] is False


def test_failing_checks_name_the_check_and_why() -> None:
    answer = {"checks": {"kafka": {"ok": False, "error": "not yet in the consumer group"},
                         "postgres": {"ok": True}}}
    assert failing_checks(answer) == "kafka: not yet in the consumer group"
