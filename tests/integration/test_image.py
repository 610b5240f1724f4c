"""The image, built and run for real: `make image`'s script, then the container against the
local stack.

`scripts/image.sh` builds ``deploy/Dockerfile`` (with podman here, from a base it makes
with mmdebstrap, and with the host's CA certificates for pip behind this machine's
TLS-inspecting proxy: an image for tests only). The container runs as in production: as
user 10001, with a read-only root filesystem, the spool on a tmpfs, the host's network to
reach the local Kafka and PostgreSQL. It must write a topic's events exactly once, pass its
own HEALTHCHECK while it runs, and on SIGTERM drain and exit 0 within its stop grace period.
The image's size is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import ROOT, ROWS, Harness
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration

TAG = "localhost/weir:it"
GRACE_S = 45  # the Kubernetes manifests' terminationGracePeriodSeconds


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / ".stack" / "containers.conf")}
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


@pytest.fixture(scope="module")
def image() -> str:
    built = subprocess.run(["bash", str(ROOT / "scripts" / "image.sh"), TAG],
                           capture_output=True, text=True, timeout=900, check=False,
                           env={**os.environ, "WEIR_IMAGE_EXTRA_CA": "host"})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    print(built.stdout.strip())  # the image's size
    return TAG


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"weir-it-{uuid.uuid4().hex[:8]}"
    yield name
    podman("rm", "--force", name)


def container_config(h: Harness, port: int) -> Path:
    """The harness's config as the container sees it: schemas at /app/schemas, metrics on
    a port of its own (its health check follows WEIR_METRICS__PORT)."""
    config: dict[str, Any] = yaml.safe_load(h.config.read_text())
    for et in config["event_types"].values():
        et["schema_file"] = f"/app/schemas/{Path(et['schema_file']).name}"
    config["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": port}
    config["dead_letters"]["spool_dir"] = "/var/lib/weir/spool"
    path = h.tmp / "container.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)
    return path


def test_the_image_runs_weir_exactly_once_healthy_and_drains_on_sigterm(
        tmp_path: Path, image: str, container_name: str) -> None:
    h = Harness(tmp_path, partitions=3)
    h.migrate()
    try:
        h.produce(2000)
        port = free_port()
        config = container_config(h, port)
        run = podman(
            "run", "--detach", "--name", container_name, "--network", "host", "--read-only",
            "--user", "10001:10001",
            # podman 4.3 sets no owner on a tmpfs: writable by all, sticky, as /tmp is.
            "--tmpfs", "/var/lib/weir/spool:rw,mode=1777",
            "--volume", f"{config}:/config/weir.yaml:ro",
            "--env", "WEIR_CONFIG=/config/weir.yaml", "--env", f"WEIR_METRICS__PORT={port}",
            image, "run")
        assert run.returncode == 0, run.stderr
        h.wait_for(ROWS, 2000, 180)
        user = podman("exec", container_name, "id", "-u")
        assert user.stdout.strip() == "10001"
        healthy = podman("healthcheck", "run", container_name)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        writable = podman("exec", container_name, "touch", "/app/x")
        assert writable.returncode != 0  # the root filesystem is read-only
        h.produce(500)  # more while it runs: written once too
        h.wait_for(ROWS, 2500, 120)
        started = time.monotonic()
        stop = podman("stop", "--time", str(GRACE_S), container_name, timeout=GRACE_S + 30)
        took = time.monotonic() - started
        assert stop.returncode == 0, stop.stderr
        code = podman("inspect", "--format", "{{.State.ExitCode}}", container_name)
        assert code.stdout.strip() == "0", podman("logs", container_name).stdout[-3000:]
        assert took < GRACE_S  # drained by itself: no SIGKILL at the deadline
        logs = podman("logs", container_name).stdout
        assert '"event": "stopping"' in logs or '"event":"stopping"' in logs, logs[-2000:]
        # Exactly once: every acknowledged event is one row, none twice, none lost.
        assert h.scalar(ROWS) == 2500
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    finally:
        h.cleanup()


def compose(project: str, override: Path, *args: str,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / ".stack" / "containers.conf")}
    command = [str(Path(sys.executable).parent / "podman-compose"), "-p", project,
               "-f", str(ROOT / "deploy" / "compose.yaml"), "-f", str(override), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def test_the_compose_services_migrate_then_run_against_the_local_stack(
        tmp_path: Path, image: str) -> None:
    # The compose file's own `migrate` and `weir` services (two replicas), under
    # podman-compose, pointed at the local stack by an override file: the image above, the
    # host's network, and a config of this test's (its own topics, schema and group). Kafka
    # and PostgreSQL come from the local stack, so they are not started (--no-deps; podman
    # 4.3 ignores `condition: service_healthy` anyway).
    h = Harness(tmp_path, partitions=4)
    project = f"weirit{uuid.uuid4().hex[:8]}"
    config_dir = tmp_path / "compose-config"
    config_dir.mkdir()
    config: dict[str, Any] = yaml.safe_load(h.config.read_text())
    for et in config["event_types"].values():
        et["schema_file"] = f"/app/schemas/{Path(et['schema_file']).name}"
    config["dead_letters"]["spool_dir"] = "/var/lib/weir/spool"
    (config_dir / "weir.yaml").write_text(yaml.safe_dump(config))
    config_dir.chmod(0o755)
    (config_dir / "weir.yaml").chmod(0o644)
    service = {"image": image, "network_mode": "host",
               "environment": {"WEIR_CONFIG": "/test/weir.yaml",
                               "WEIR_METRICS__ENABLED": "false"},
               "volumes": [f"{config_dir}:/test:ro"]}
    override = tmp_path / "compose.override.yaml"
    override.write_text(yaml.safe_dump({"services": {"migrate": service, "weir": service}}))
    try:
        migrate = compose(project, override, "up", "--no-deps", "--abort-on-container-exit",
                          "migrate")
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        assert h.scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema "
                        "= $1 AND table_name = 'orders'", h.schema) == 1
        up = compose(project, override, "up", "--detach", "--no-deps", "weir")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        running = podman("ps", "--filter", f"label=io.podman.compose.project={project}",
                         "--format", "{{.Names}}")
        assert len(running.stdout.split()) == 2, running.stdout  # the two replicas
        h.produce(1500)
        h.wait_for(ROWS, 1500, 180)
        assert h.scalar("SELECT count(DISTINCT kafka_partition) FROM orders") == 4
    finally:
        down = compose(project, override, "down", "--timeout", "45")
        h.cleanup()
    assert down.returncode == 0, down.stderr[-2000:]
