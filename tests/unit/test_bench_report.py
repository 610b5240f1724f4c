"""The benchmark's results file and its ratio and target maths (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report


def figures(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "consume_ceiling_events_per_s": 400_000, "write_ceiling_events_per_s": 100_000,
        "weir_events_per_s": 80_000, "peer_events_per_s": 20_000,
        "connect_events_per_s": 40_000,
        "latency_half_load": {"p50": 90.0, "p95": 180.0, "p99": 240.0},
        "latency_100_per_s": {"p50": 60.0, "p95": 150.0, "p99": 190.0},
        "weir_peak_rss_mb": 150.0, "weir_cpu_s_per_million": 10.0,
    }
    return base | overrides


def test_ratios_use_the_lower_ceiling() -> None:
    assert report.ratios(figures()) == {"weir_vs_ceiling": 0.8, "weir_vs_peer": 4.0,
                                        "weir_vs_connect": 2.0}
    assert report.ratios(figures(consume_ceiling_events_per_s=50_000))["weir_vs_ceiling"] == 1.6


def test_missing_figures_give_no_ratio() -> None:
    r = report.ratios(figures(peer_events_per_s=None, write_ceiling_events_per_s=None,
                              connect_events_per_s=None))
    assert r == {"weir_vs_ceiling": 0.2, "weir_vs_peer": None, "weir_vs_connect": None}


def test_targets_met_missed_and_unmeasured() -> None:
    assert all(report.targets(figures(), linger_ms=100).values())
    missed = report.targets(figures(weir_events_per_s=60_000, weir_peak_rss_mb=250.0),
                            linger_ms=100)
    assert missed["weir_vs_ceiling"] is False
    assert missed["weir_vs_peer"] is True
    assert missed["weir_vs_connect"] is False  # 60,000 against 40,000: 1.5, not 2
    assert missed["peak_rss"] is False
    # Weir ≥ 2 x Kafka Connect: 80,000 against 60,000 is 1.33
    slow = report.targets(figures(connect_events_per_s=60_000), linger_ms=100)
    assert slow["weir_vs_connect"] is False
    assert report.targets(figures(connect_events_per_s=None), 100)["weir_vs_connect"] is None
    # at 100 events/s the bound is linger + 100 ms
    assert report.targets(figures(), linger_ms=50)["p99_100_per_s"] is False
    assert report.targets(figures(latency_half_load=None), 100)["p99_half_load"] is None


def test_the_memory_target_is_per_process() -> None:
    """Two workers and their supervisor hold more together than one process may alone."""
    workers = figures(weir_peak_rss_mb=340.0, weir_largest_process_rss_mb=150.0,
                      weir_processes=3)
    assert report.targets(workers, 100)["peak_rss"] is True
    assert report.targets(workers | {"weir_largest_process_rss_mb": 210.0}, 100)[
        "peak_rss"] is False
    data = results() | {"figures": workers, "targets": report.targets(workers, 100)}
    assert ("peak RSS 340.0 MB over its 3 processes, the largest 150.0 MB "
            "(≤ 200 per process: met)") in report.markdown(data)


def results() -> dict[str, Any]:
    f = figures(weir_workers=2, peer_version="3.28.1",
                connect_version={"connect": "4.4.0", "debezium": "3.3.1.Final"},
                weir_cpu_s_per_million=20.0, peer_cpu_s_per_million=60.0,
                connect_cpu_s_per_million=45.5, connect_peak_rss_mb=612.3,
                weir_by_workers={"1": {"events_per_s": 50_000}, "2": {"events_per_s": 80_000}},
                connect_envelope_bytes_per_event=1013, connect_source_bytes_per_event=322)
    return {"name": "2026-01-01-abc1234", "events": 1000, "machine": {"cpus": 2},
            "settings": {"partitions": 12}, "figures": f, "ratios": report.ratios(f),
            "targets": report.targets(f, 100), "load_average": {}}


def test_results_round_trip_and_render(tmp_path: Path) -> None:
    data = results()
    stem = report.result_name("2026-01-01", "abc1234")
    path = report.write_results(tmp_path / "out", stem, data)
    assert path.name == "2026-01-01-abc1234.json"
    assert report.read_results(path) == data
    table = report.markdown(data)
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert "0.80 of min ceiling" in rows["| **Weir** (`weir run --until-caught-up --workers 2`)"]
    assert "Weir is 4.00 x | ≥ 3x: met | 60.0 |" in rows["| Quix Streams 3.28.1 PostgreSQL sink"]
    connect = rows["| Kafka Connect 4.4.0 + Debezium JDBC sink 3.3.1.Final"]
    assert "| 40,000 | Weir is 2.00 x | ≥ 2x: met | 45.5 | 612.3 |" in connect
    assert "1: 50,000 events/s, 2: 80,000 events/s" in table
    assert "1,013 bytes per event against 322" in table
    assert "peak RSS 150.0 MB (≤ 200 per process: met)" in table
    report.chart(data, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_results_without_the_new_figures_still_render() -> None:
    """Older results files (one Weir process, no Kafka Connect) keep rendering."""
    f = figures(connect_events_per_s=None)
    data = results() | {"figures": f, "ratios": {"weir_vs_ceiling": 0.8, "weir_vs_peer": 4.0},
                        "targets": report.targets(f, 100),
                        "load_average": {"weir": {"before": [1.2], "after": [1.5]}}}
    table = report.markdown(data)
    assert "--workers 1`" in table
    assert "load before/after the Weir run: 1.2 / 1.5" in table
    assert ("| Kafka Connect + Debezium JDBC sink | — | Weir is — x | ≥ 2x: not measured"
            in table)


def matched(quix_partial: bool = False) -> dict[str, Any]:
    """Rounds at 1 and 2: Weir 40,000 and 80,000 ev/s; Quix 10,000 and 30,000; Connect
    20,000 and 35,000; ceilings 50,000 and 100,000 (write)."""
    return figures(
        weir_workers=2, peer_instances=2, connect_tasks=2,
        matched={"1": {"weir": {"events_per_s": 40_000, "rows": 9},
                       "quix": {"events_per_s": 10_000, "rows": 9, "partial": quix_partial},
                       "connect": {"events_per_s": 20_000, "partial": False}},
                 "2": {"weir": {"events_per_s": 80_000, "rows": 9},
                       "quix": {"events_per_s": 30_000, "rows": 9, "partial": False},
                       "connect": {"events_per_s": 35_000, "partial": False}}},
        ceilings_by_workers={"1": {"consume_events_per_s": 60_000,
                                   "write_events_per_s": 50_000},
                             "2": {"consume_events_per_s": 120_000,
                                   "write_events_per_s": 100_000}},
        rounds_order=[["weir", "quix", "connect"], ["connect", "quix", "weir"]])


def test_peers_are_judged_at_equal_parallelism_on_the_lower_round() -> None:
    """1 v 1 and N v N: the lower ratio is judged; a partial run is left out."""
    f = matched()
    assert report.ratios_by_workers(f) == {
        "1": {"quix": 4.0, "connect": 2.0, "ceiling": 0.8},
        "2": {"quix": 2.67, "connect": 2.29, "ceiling": 0.8}}
    r = report.ratios(f)
    assert (r["weir_vs_peer"], r["weir_vs_connect"]) == (2.67, 2.0)
    assert report.targets(f, 100)["weir_vs_peer"] is False
    partial = matched(quix_partial=True)
    assert report.ratios_by_workers(partial)["1"]["quix"] is None
    assert report.ratios(partial)["weir_vs_peer"] == 2.67
    data = results() | {"figures": f, "ratios": r, "targets": report.targets(f, 100)}
    table = report.markdown(data)
    assert ("| 2 | connect → quix → weir | 120,000 / 100,000 | 80,000 | — | 30,000 | — | "
            "35,000 | — | 0.80 | 2.67 | 2.29 |") in table
    assert "PostgreSQL sink, 2 instances |" in table
    assert "(the lower at equal parallelism)" in table
    assert "None written as an empty string" in table


def test_the_latency_from_the_producers_clock_is_shown_beside() -> None:
    """A run on LogAppendTime topics also gives the latency from the events' own time."""
    f = figures(latency_half_load={"p50": 90.0, "p95": 180.0, "p99": 240.0,
                                   "from_producer": {"p50": 120.0, "p95": 250.0,
                                                     "p99": 330.0}})
    table = report.markdown(results() | {"figures": f, "targets": report.targets(f, 100)})
    assert "at half load p50 / p95 / p99 120 / 250 / 330 ms" in table
    assert "append time" not in report.markdown(results())  # an older run: not said
