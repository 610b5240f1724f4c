"""deploy/compose.yaml validates against the Compose Specification and wires the stack.

The schema is the compose-spec JSON Schema that check-jsonschema vendors
(``--builtin-schema vendor.compose-spec``), so the check runs offline.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deploy.conftest import DEPLOY, check_deployed_config, load_yaml

# An exact release: x.y.z, or PostgreSQL's x.y (since version 10 its minor is the patch).
EXACT_TAG = re.compile(r":v?\d+\.\d+\.\d+|^postgres:\d+\.\d+-")


def test_compose_validates_against_the_compose_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(DEPLOY / "compose.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "postgres", "migrate", "weir", "producer",
                             "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["migrate"]["command"] == ["migrate"]
    assert services["weir"]["command"] == ["run"]
    assert services["weir"]["deploy"]["replicas"] == 2
    assert services["producer"]["profiles"] == ["producer"]
    assert services["producer"]["command"][0] == "produce"


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert EXACT_TAG.search(service["image"]), f"{name}: {service['image']} is not pinned"


def test_replicas_start_after_a_successful_migrate(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["weir"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully")
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["weir"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("kafka", "postgres"):
        assert services[name]["healthcheck"]["test"]


def test_stop_grace_outlasts_the_drain(compose: dict[str, Any]) -> None:
    config = load_yaml(DEPLOY / "config" / "compose.yaml")
    grace = int(compose["services"]["weir"]["stop_grace_period"].removesuffix("s"))
    assert grace > config["pipeline"]["shutdown_timeout_s"]


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (relative to the compose file) of bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (DEPLOY / source).resolve()
    return found


def test_weir_containers_mount_a_config_that_checks(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    for name in ("migrate", "weir", "producer"):
        service = compose["services"][name]
        config = service["environment"]["WEIR_CONFIG"]
        folder, file = config.rsplit("/", 1)
        host = mounts(service)[folder] / file
        result = check_deployed_config(host, tmp_path)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "WEIR_POSTGRES__PASSWORD" in service["environment"]


def test_password_is_not_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), f"{name}.{key} must come from the env"


def test_prometheus_scrapes_weir_and_loads_the_rules(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    volumes = mounts(service)
    config = load_yaml(volumes["/etc/prometheus/prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    target = jobs["weir"]["dns_sd_configs"][0]
    assert target["names"] == ["weir"]
    assert target["port"] == load_yaml(DEPLOY / "config" / "compose.yaml")["metrics"]["port"]
    assert volumes["/etc/prometheus/rules"] == (DEPLOY / "prometheus").resolve()
    assert any(r.startswith("/etc/prometheus/rules/") for r in config["rule_files"])


def test_grafana_provisions_prometheus_and_the_dashboard(compose: dict[str, Any]) -> None:
    volumes = mounts(compose["services"]["grafana"])
    assert volumes["/var/lib/grafana/dashboards"] == (DEPLOY / "grafana").resolve()
    sources = load_yaml(volumes["/etc/grafana/provisioning/datasources/weir.yml"])
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    boards = load_yaml(volumes["/etc/grafana/provisioning/dashboards/weir.yml"])
    assert boards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
