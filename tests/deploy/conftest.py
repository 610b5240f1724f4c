"""Helpers for the static checks of ``deploy/``: paths, YAML loading, `weir check-config`.

No Docker engine runs where these tests run, so the deploy files are checked as files:
parsed, validated against their published schemas (bundled by pip packages or vendored
under ``schemas/``), and cross-checked against the configs they mount.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def check_config(path: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    """Run `weir check-config` on a file with these WEIR_* overrides (and no others)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")} | overrides
    return subprocess.run(
        [sys.executable, "-m", "processor", "check-config", str(path)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )


def check_deployed_config(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`weir check-config` as the container would run it.

    A mounted secret file (``postgres.password_file``) exists only in the pod; here a
    stand-in file is passed the way an operator would, as an environment override.
    """
    overrides = {}
    if load_yaml(path).get("postgres", {}).get("password_file"):
        secret = tmp_path / "postgres-password"
        secret.write_text("stand-in\n")
        overrides["WEIR_POSTGRES__PASSWORD_FILE"] = str(secret)
    return check_config(path, **overrides)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """deploy/compose.yaml, parsed."""
    data: dict[str, Any] = load_yaml(DEPLOY / "compose.yaml")
    return data


@pytest.fixture(scope="session")
def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes manifest under deploy/k8s, by kind (one of each kind)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        doc = load_yaml(path)
        assert doc["kind"] not in found, f"two {doc['kind']} manifests"
        found[doc["kind"]] = doc
    return found
