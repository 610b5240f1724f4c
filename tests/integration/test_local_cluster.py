"""scripts/local-cluster.sh runs the compose stack's processes without containers.

Migrate, two `weir run` replicas in one group, the producer and a Prometheus, on the
local stack: rows land, both replicas own partitions, Prometheus scrapes both.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.integration.conftest import ROOT, Harness, base_env
from tests.integration.servers import free_port

SCRIPT = ROOT / "scripts" / "local-cluster.sh"
PRODUCED = re.compile(r"^produced \d+ events .*: (.*)$", re.MULTILINE)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        body: bytes = response.read()
        return body


def assigned_partitions(port: int) -> float:
    """`weir_assigned_partitions` from a replica's /metrics; -1 if it is not serving yet."""
    try:
        text = get(f"http://127.0.0.1:{port}/metrics").decode()
    except OSError:
        return -1
    match = re.search(r"^weir_assigned_partitions (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else -1


def scraped_up(prometheus: int) -> dict[str, str]:
    """instance -> value of `up{job="weir"}` as Prometheus last scraped it."""
    query = urllib.parse.urlencode({"query": 'up{job="weir"}'})
    try:
        body = orjson.loads(get(f"http://127.0.0.1:{prometheus}/api/v1/query?{query}"))
    except OSError:
        return {}
    return {r["metric"]["instance"]: r["value"][1] for r in body["data"]["result"]}


def eventually(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not true after {timeout}s")


def produced_per_topic(*logs: Path) -> dict[str, int]:
    """Sum the producer's own report lines ('produced N events …: topic=n, …')."""
    total: dict[str, int] = {}
    for log in logs:
        match = PRODUCED.search(log.read_text())
        assert match, f"no report line in {log}"
        for pair in match.group(1).split(", "):
            topic, count = pair.rsplit("=", 1)
            total[topic] = total.get(topic, 0) + int(count)
    return total


def test_local_cluster_runs_the_compose_processes(tmp_path: Path) -> None:
    h = Harness(tmp_path, metrics={"enabled": True, "host": "127.0.0.1"})
    cluster = tmp_path / "cluster"
    ports, prometheus = [free_port(), free_port()], free_port()
    env = base_env() | {
        "LOCAL_CLUSTER_DIR": str(cluster),
        "LOCAL_CLUSTER_CONFIG": str(h.config),
        "LOCAL_CLUSTER_METRICS_PORTS": " ".join(map(str, ports)),
        "LOCAL_CLUSTER_PROMETHEUS_PORT": str(prometheus),
        "LOCAL_CLUSTER_PRODUCE_COUNT": "20000",
        "LOCAL_CLUSTER_PRODUCE_RATE": "5000",
        "WEIR_BIN": str(Path(sys.executable).parent / "weir"),
    }
    try:
        up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
        assert up.returncode == 0, up.stdout + up.stderr

        # Both replicas own partitions at the same time: the group split the work.
        eventually(lambda: all(assigned_partitions(p) > 0 for p in ports), 90,
                   "both replicas own partitions")

        # Rows land: every order the producer reported is in its table exactly once.
        eventually(lambda: subprocess.run([str(SCRIPT), "status"], env=env, check=False,
                                          capture_output=True, text=True
                                          ).stdout.count("producer: exited") == 1,
                   120, "the producer finished")
        produced = produced_per_topic(cluster / "topics.log", cluster / "producer.log")
        h.wait_for("SELECT count(*) FROM orders", produced[h.topics["order"]], 120)
        assert h.scalar("SELECT count(*) FROM page_views") > 0
        assert h.scalar("SELECT count(*) - count(DISTINCT event_id) FROM orders") == 0

        # Prometheus scrapes both replicas.
        targets = {f"127.0.0.1:{p}" for p in ports}
        eventually(lambda: scraped_up(prometheus) == dict.fromkeys(targets, "1"), 60,
                   "Prometheus reports up == 1 for both replicas")

        status = subprocess.run([str(SCRIPT), "status"], env=env, capture_output=True,
                                text=True, check=False)
        assert status.stdout.count("weir-") == 2
        assert "exited" not in status.stdout.replace("producer: exited", "")
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, timeout=180,
                       check=False)
        h.cleanup()


def test_compose_prometheus_config_is_valid() -> None:
    # promtool comes with the prometheus package local-cluster.sh installs.
    subprocess.run([str(SCRIPT), "install"], check=True, timeout=600)
    result = subprocess.run(["promtool", "check", "config",
                             str(ROOT / "deploy/compose/prometheus.yml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
