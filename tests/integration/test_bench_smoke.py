"""`make bench`'s harness on a tiny data set, so it cannot rot. No figure is asserted.

Neither peer runs here: Quix Streams needs its own virtualenv and Kafka Connect a JVM and
its jars, both of which only `make bench` installs (the unit tests cover their figures in
the report; timing stays out of the test suite).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import report
from tests.integration.conftest import ROOT, base_env


def test_bench_runs_end_to_end_on_a_tiny_data_set(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--events", "3000", "--write-sample", "3000",
         "--partitions", "3", "--no-peer", "--no-connect", "--workers", "1", "2",
         "--latency-seconds", "2", "--slow-seconds", "2", "--out", str(tmp_path)],
        cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [path] = tmp_path.glob("*.json")
    results = report.read_results(path)
    f = results["figures"]
    for key in ("consume_ceiling_events_per_s", "write_ceiling_events_per_s",
                "weir_events_per_s", "weir_cpu_s_per_million", "weir_peak_rss_mb"):
        assert f[key] > 0, key
    assert f["weir_exit_code"] == 0
    assert f["weir_rows"] > 0
    # Both worker counts ran on the same events; the best one is Weir's figure.
    by_workers = f["weir_by_workers"]
    assert set(by_workers) == {"1", "2"}
    assert {w["rows"] for w in by_workers.values()} == {f["weir_rows"]}
    assert f["weir_events_per_s"] == by_workers[str(f["weir_workers"])]["events_per_s"]
    assert "connect_events_per_s" not in f
    # The ceilings at each worker count's parallelism, and the rounds in alternate order.
    for n in ("1", "2"):
        ceiling = f["ceilings_by_workers"][n]
        assert ceiling["consume_events_per_s"] > 0, ceiling
        assert ceiling["write_events_per_s"] > 0, ceiling
        assert f["matched"][n]["weir"] == by_workers[n]
    assert f["ceilings_by_workers"]["2"]["write_connections"] == 2 * f["ceilings_by_workers"][
        "1"]["write_connections"]
    assert f["ceilings_by_workers"]["2"]["consume_records"] == 3000  # each record once
    assert f["rounds_order"] == [["weir", "quix", "connect"], ["connect", "quix", "weir"]]
    # The mapped rows: as many rich events (other draws, so other bots dropped), with their
    # mapped columns, then with their items as child rows too; their ratios.
    assert f["weir_mapped_exit_code"] == f["weir_children_exit_code"] == 0
    assert f["weir_mapped_rows"] == f["weir_children_rows"] > 2000
    assert f["weir_children_child_rows"] > f["weir_children_rows"] // 2
    assert results["ratios"]["mapped_cpu_vs_example"] > 0
    assert results["ratios"]["children_cpu_vs_example"] > 0
    assert "**Weir, mapped**" in path.with_suffix(".md").read_text()
    for key in ("latency_half_load", "latency_100_per_s"):
        assert f[key]["rows"] == f[key]["rows_timed"] > 0, f[key]
    assert results["ratios"]["weir_vs_ceiling"] is not None
    assert path.with_suffix(".md").exists()
    assert path.with_suffix(".png").exists()
