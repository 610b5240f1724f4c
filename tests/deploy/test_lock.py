"""The image installs deploy/requirements.lock: it must match pyproject's runtime deps."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import DEPLOY, ROOT

LOCK = DEPLOY / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def runtime_dependencies() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def pins() -> dict[str, str]:
    found = {}
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def test_lock_fingerprint_matches_pyproject() -> None:
    # scripts/lock.sh writes this line; a changed dependency list makes it stale.
    digest = hashlib.sha256(json.dumps(sorted(runtime_dependencies())).encode()).hexdigest()
    last = LOCK.read_text().splitlines()[-1]
    assert last == f"# pyproject-dependencies-sha256: {digest}", (
        "deploy/requirements.lock is stale: run scripts/lock.sh"
    )


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    locked = pins()
    for spec in runtime_dependencies():
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in the lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{req.name}=={locked[name]} is outside {req.specifier}"
        )


def test_every_pin_is_exact_and_hashed() -> None:
    # pip --require-hashes refuses a line without hashes; catch it here, not in a build.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    packages = [b for b in blocks if PIN.match(b)]
    # (A package may be pinned twice, each for its Python versions: numpy's wheels differ.)
    assert len(packages) >= len(pins()) > 10
    for block in packages:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_no_dev_tool_in_the_image_lock() -> None:
    locked = pins()
    for tool in ("pytest", "mypy", "ruff", "uv", "check-jsonschema"):
        assert tool not in locked
