"""Health, readiness, metrics against the docs, and a real Prometheus over a live Weir (issue 5)."""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.integration.conftest import ROOT, Harness
from tests.integration.servers import PrivatePostgres, free_port

DOCUMENTED = re.compile(r"^\| `(weir_[a-z_]+)` \|", re.MULTILINE)


def get(url: str) -> tuple[int, Any]:
    """(status, JSON or text); status 0 when nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our own http URLs
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    except urllib.error.URLError:
        return 0, None
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body.decode()


def eventually(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: still {last!r} after {timeout}s")


def observed(tmp_path: Path, **extra: Any) -> tuple[Harness, int]:
    port = free_port()
    return Harness(tmp_path, metrics={"enabled": True, "port": port, "lag_interval_s": 0.5},
                   **extra), port


def test_endpoints_answer_and_metrics_match_the_docs(tmp_path: Path) -> None:
    h, port = observed(tmp_path / "obs")
    h.migrate()
    try:
        h.produce(4000, "--invalid-ratio", "0.05")
        weir = h.start("weir")
        base = f"http://127.0.0.1:{port}"
        eventually(lambda: get(f"{base}/readyz")[0] == 200, 60, "readyz")
        status, health = get(f"{base}/healthz")
        assert status == 200
        assert health["status"] == "ok"
        _, ready = get(f"{base}/readyz")
        assert ready["checks"]["kafka"]["group_joined"] is True
        assert ready["checks"]["postgres"]["ok"] is True
        h.wait_for("SELECT count(*) > 0 FROM weir_dead_letters", True, timeout=60, alive=[weir])
        _, text = get(f"{base}/metrics")
        exposed = {m.removesuffix("_total") for m in
                   re.findall(r"^# TYPE (weir_[a-z_]+) ", text, re.MULTILINE)}
        documented = {m.removesuffix("_total") for m in
                      DOCUMENTED.findall((ROOT / "docs/metrics.md").read_text())}
        assert exposed == documented
        assert 'weir_consumer_lag_records{partition="0",topic="' in text
        weir.send_signal(signal.SIGTERM)
        assert weir.wait(60) == 0
    finally:
        h.cleanup()


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    subprocess.run([str(ROOT / "scripts/local-cluster.sh"), "install"], check=True,
                   timeout=600, capture_output=True)
    return Path("/usr/bin/prometheus")


class Prometheus:
    """A private Prometheus scraping one Weir every second, with test copies of the rules."""

    def __init__(self, binary: Path, target_port: int, rules: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="weir-prom-"))
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "weir",
                                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [str(binary), f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def query(self, expr: str) -> list[Any]:
        q = urllib.parse.urlencode({"query": expr})
        status, body = get(f"http://127.0.0.1:{self.port}/api/v1/query?{q}")
        assert status == 200, body
        assert body["status"] == "success", body
        result: list[Any] = body["data"]["result"]
        return result

    def alert_states(self) -> dict[str, str]:
        _, body = get(f"http://127.0.0.1:{self.port}/api/v1/alerts")
        return {a["labels"]["alertname"]: a["state"] for a in body["data"]["alerts"]}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def dashboard_queries() -> list[str]:
    dashboard = orjson.loads((ROOT / "deploy/grafana/weir.json").read_bytes())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return [r for group in rules["groups"] for r in group["rules"]]


@pytest.mark.timeout(600)
def test_prometheus_evaluates_every_query_and_the_lag_alert_fires_and_resolves(
    tmp_path: Path, prometheus_binary: Path, private_pg: PrivatePostgres
) -> None:
    rules_file = ROOT / "deploy/prometheus/alerts.yml"
    check = subprocess.run(["promtool", "check", "rules", str(rules_file)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    # The real rules, with the waiting times shortened so the test sees them fire.
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        rule["for"] = "0s"
        if rule["alert"] == "WeirLagOverSLO":
            rule["expr"] = rule["expr"].replace("> 60", "> 3")
    test_rules = tmp_path / "alerts.yml"
    test_rules.write_text(yaml.safe_dump(rules))
    h, port = observed(tmp_path / "weir", dsn=private_pg.dsn)
    h.migrate()
    prom = Prometheus(prometheus_binary, port, test_rules)
    try:
        h.produce(3000, "--invalid-ratio", "0.05")
        weir = h.start("weir")
        load = subprocess.Popen(  # continuous load for the whole test
            [*h.weir_command("produce", "--count", "100000", "--rate", "400", "--no-progress",
                             "--invalid-ratio", "0.05")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.process_env())
        try:
            eventually(lambda: prom.query('up{job="weir"} == 1'), 60, "scrape")
            # Rates need two samples in their window: give them a few scrapes.
            time.sleep(6)
            for expr in dashboard_queries():
                if "weir_mirror_" in expr or "weir_deletes_" in expr:
                    prom.query(expr)  # this Weir has no mirror, no deletes: evaluates, empty
                    continue
                assert eventually(lambda e=expr: prom.query(e), 30, expr)
            for rule in alert_rules():
                prom.query(rule["expr"])  # every alert expression evaluates
            assert "WeirLagOverSLO" not in prom.alert_states()
            private_pg.freeze()
            eventually(lambda: prom.alert_states().get("WeirLagOverSLO") == "firing", 90,
                       "the lag alert firing while PostgreSQL is frozen")
            private_pg.thaw()
            eventually(lambda: "WeirLagOverSLO" not in prom.alert_states(), 120,
                       "the lag alert resolving after PostgreSQL returns")
        finally:
            load.terminate()
            load.wait(30)
        weir.send_signal(signal.SIGTERM)
        assert weir.wait(60) == 0
    finally:
        prom.stop()
        h.cleanup()


def test_readiness_says_why_when_postgres_is_down(
    tmp_path: Path, private_pg: PrivatePostgres
) -> None:
    h, port = observed(tmp_path, dsn=private_pg.dsn)
    h.migrate()
    base = f"http://127.0.0.1:{port}"
    try:
        h.produce(500)
        weir = h.start("weir")
        eventually(lambda: get(f"{base}/readyz")[0] == 200, 60, "ready")
        private_pg.freeze()
        _, body = eventually(
            lambda: (r := get(f"{base}/readyz"))[0] == 503 and r, 60, "not ready")
        assert body["ready"] is False
        assert body["checks"]["postgres"]["ok"] is False
        assert "error" in body["checks"]["postgres"]
        assert get(f"{base}/healthz")[0] == 200  # alive all the same
        private_pg.thaw()
        eventually(lambda: get(f"{base}/readyz")[0] == 200, 60, "ready again")
        assert weir.poll() is None
        weir.send_signal(signal.SIGTERM)
        assert weir.wait(60) == 0
    finally:
        private_pg.thaw()  # idempotent; a failed assertion may have left it frozen
        h.cleanup()
