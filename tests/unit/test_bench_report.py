"""The benchmark's results file and its ratio and target maths (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report


def figures(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "consume_ceiling_events_per_s": 400_000, "write_ceiling_events_per_s": 100_000,
        "weir_events_per_s": 80_000, "peer_events_per_s": 20_000,
        "latency_half_load": {"p50": 90.0, "p95": 180.0, "p99": 240.0},
        "latency_100_per_s": {"p50": 60.0, "p95": 150.0, "p99": 190.0},
        "weir_peak_rss_mb": 150.0,
    }
    return base | overrides


def test_ratios_use_the_lower_ceiling() -> None:
    assert report.ratios(figures()) == {"weir_vs_ceiling": 0.8, "weir_vs_peer": 4.0}
    assert report.ratios(figures(consume_ceiling_events_per_s=50_000))["weir_vs_ceiling"] == 1.6


def test_missing_figures_give_no_ratio() -> None:
    r = report.ratios(figures(peer_events_per_s=None, write_ceiling_events_per_s=None))
    assert r == {"weir_vs_ceiling": 0.2, "weir_vs_peer": None}


def test_targets_met_missed_and_unmeasured() -> None:
    assert all(report.targets(figures(), linger_ms=100).values())
    missed = report.targets(figures(weir_events_per_s=60_000, weir_peak_rss_mb=250.0),
                            linger_ms=100)
    assert missed["weir_vs_ceiling"] is False
    assert missed["weir_vs_peer"] is True
    assert missed["peak_rss"] is False
    # at 100 events/s the bound is linger + 100 ms
    assert report.targets(figures(), linger_ms=50)["p99_100_per_s"] is False
    assert report.targets(figures(latency_half_load=None), 100)["p99_half_load"] is None


def results() -> dict[str, Any]:
    f = figures()
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
    assert "| **Weir**" in table
    assert "0.80 of min ceiling" in table
    assert "4.00 x" in table
    report.chart(data, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
