"""`make bench-cdc`'s harness on a few thousand changes, so it cannot rot. No figure is
asserted; the outcome is: each system's table equals the model of the source table.

The Debezium JDBC sink needs Java and the jars `make bench` gathers into
benchmarks/connect/libs, which `make test` does not fetch: without them its test is skipped
and says why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.connect import phase as connect_phase
from tests.integration.conftest import ROOT, base_env

pytestmark = pytest.mark.integration


def bench_cdc(out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cdc.run", "--changes", "3000", "--out", str(out),
         *args], cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=240,
        check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [path] = out.glob("*-cdc-*.json")
    assert path.with_suffix(".md").exists()
    return report.read_results(path)


def assert_equals_model(results: dict[str, Any], system: str, counts: set[str]) -> None:
    by_count = results["figures"][system]
    assert set(by_count) == counts
    for n, f in by_count.items():
        assert f["status"] == "ok", (system, n, f)
        assert f["rows"] == results["model_rows"] > 0
        assert f["digest"] == results["model_digest"]
        assert f["changes_per_s"] > 0
        assert f["cpu_s_per_million"] > 0


def test_weir_mirrors_the_change_topic_at_one_and_two_workers(tmp_path: Path) -> None:
    results = bench_cdc(tmp_path, "--no-connect", "--workers", "1", "2")
    assert results["data"]["records"] == 3000 + results["data"]["ops"]["d"]
    assert_equals_model(results, "weir", {"1", "2"})
    assert results["figures"]["jdbc"] == {}
    assert results["ratios"] == {}


def test_weir_and_the_jdbc_sink_both_mirror_the_change_topic(tmp_path: Path) -> None:
    # make test fetches the sink's jars (scripts/test-deps.sh): missing, this fails.
    assert connect_phase.missing() is None, connect_phase.missing()
    results = bench_cdc(tmp_path, "--workers", "1", "--stall-seconds", "60")
    assert_equals_model(results, "weir", {"1"})
    assert_equals_model(results, "jdbc", {"1"})
    assert results["figures"]["jdbc"]["1"]["exit_code"] == connect_phase.STOPPED
    assert results["ratios"]["1"]["changes_per_s"] is not None
