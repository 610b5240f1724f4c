"""Every config mounted into a container is one `weir check-config` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, check_deployed_config, load_yaml

CONFIGS = sorted((DEPLOY / "config").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"compose.yaml", "k8s.yaml", "local.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_passes_check_config(path: Path, tmp_path: Path) -> None:
    result = check_deployed_config(path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert ": ok" in result.stdout


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_holds_no_password(path: Path) -> None:
    postgres = load_yaml(path)["postgres"]
    assert "password" not in postgres
    assert ":" not in postgres["dsn"].split("@")[0].removeprefix("postgresql://")


def test_container_configs_listen_on_every_interface() -> None:
    for name in ("compose.yaml", "k8s.yaml"):
        assert load_yaml(DEPLOY / "config" / name)["metrics"]["host"] == "0.0.0.0"  # noqa: S104
