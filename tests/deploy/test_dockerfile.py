"""deploy/Dockerfile parses and follows the image rules (issue 8), checked statically.

The rules: multi-stage; a pinned base; only the locked runtime dependencies; a non-root
user; no secret baked in; `weir` as the entrypoint; a HEALTHCHECK on /healthz of the
metrics port; a build context (.dockerignore) that holds what the COPYs need and no more.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.conftest import DEPLOY, ROOT, load_yaml

DOCKERFILE = DEPLOY / "Dockerfile"
# An exact tag (python:3.11.14-slim-bookworm: major.minor.patch) or a digest.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a container's port must be reachable from outside
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE), cache_content=True)


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    """Instructions grouped by stage (comments dropped)."""
    groups: list[list[dict[str, Any]]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            groups.append([])
        if groups and ins["instruction"] != "COMMENT":
            groups[-1].append(ins)
    return groups


def values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def test_multi_stage_on_a_pinned_base(parser: DockerfileParser) -> None:
    assert parser.is_multistage
    assert len(stages(parser)) >= 2
    for image in parser.parent_images:
        assert PINNED.match(image), image
        exact = "@sha256:" in image or re.search(r":\d+\.\d+\.\d+", image)
        assert exact, f"{image!r} is not pinned to an exact tag or a digest"
        assert not image.endswith(":latest")


def test_base_python_matches_the_project_and_the_lock(parser: DockerfileParser) -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r":(\d+\.\d+)\.", parser.baseimage)
    assert minor, parser.baseimage
    assert requires == f">={minor.group(1)}"
    assert f"--python-version {minor.group(1)}" in (ROOT / "scripts/lock.sh").read_text()


def test_dependencies_come_only_from_the_lock(parser: DockerfileParser) -> None:
    installs = [r for stage in stages(parser) for r in values(stage, "RUN") if "pip install" in r]
    assert installs
    for command in installs:
        assert "--no-deps" in command, f"pip may resolve unlocked packages: {command}"
    assert any("--require-hashes" in c and "requirements.lock" in c for c in installs)


def test_runtime_stage_is_lean_and_non_root(parser: DockerfileParser) -> None:
    runtime = stages(parser)[-1]
    # Only the virtualenv comes from the build stage: no source tree, no build tools.
    from_build = [c for c in values(runtime, "COPY") if c.startswith("--from=")]
    assert from_build == ["--from=build /opt/weir /opt/weir"]
    assert not [r for r in values(runtime, "RUN") if "pip " in r or "apt-get" in r]
    users = values(runtime, "USER")
    assert users, "the runtime stage must drop root"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    # USER comes after every RUN of the final stage (and before the entrypoint).
    order = [i["instruction"] for i in runtime]
    assert max(i for i, name in enumerate(order) if name == "RUN") < order.index("USER")


def test_no_secrets_baked_in(parser: DockerfileParser) -> None:
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b", re.IGNORECASE)
    for stage in stages(parser):
        for ins in stage:
            if ins["instruction"] in ("ENV", "ARG", "LABEL"):
                assert not secretish.search(ins["value"]), ins["content"]
    copied = " ".join(values(stages(parser)[-1], "COPY"))
    assert ".env" not in copied


def test_weir_is_the_entrypoint(parser: DockerfileParser) -> None:
    runtime = stages(parser)[-1]
    assert [json.loads(v) for v in values(runtime, "ENTRYPOINT")] == [["weir"]]
    assert [json.loads(v) for v in values(runtime, "CMD")] == [["run"]]
    assert values(runtime, "STOPSIGNAL") == ["SIGTERM"]


def test_healthcheck_probes_healthz_on_the_metrics_port(parser: DockerfileParser) -> None:
    runtime = stages(parser)[-1]
    checks = values(runtime, "HEALTHCHECK")
    assert len(checks) == 1
    assert "/healthz" in checks[0]
    port = load_yaml(DEPLOY / "config" / "compose.yaml")["metrics"]["port"]
    assert values(runtime, "EXPOSE") == [str(port)]
    assert f"'{port}'" in checks[0] or f":{port}/" in checks[0]
    # Exec form: no shell in the probe's path.
    assert json.loads(checks[0].split("CMD", 1)[1].strip())[0] == "python"


def test_container_defaults(parser: DockerfileParser) -> None:
    envs = parser.envs
    assert envs["WEIR_METRICS__HOST"] == ALL_INTERFACES
    config = envs["WEIR_CONFIG"].removeprefix("/app/")
    assert (ROOT / config).is_file(), "WEIR_CONFIG must name a config the image ships"


def dockerignore_allows(path: str) -> bool:
    """The last matching .dockerignore pattern decides (Docker's rule)."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(
            parts[-1], pattern
        ):
            allowed = negate
    return allowed


def test_every_copy_source_is_in_the_build_context(parser: DockerfileParser) -> None:
    sources = []
    for stage in stages(parser):
        for value in values(stage, "COPY"):
            args = [a for a in shlex.split(value) if not a.startswith("--")]
            if not value.startswith("--from="):
                sources += args[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"


def test_build_context_leaves_out_local_state() -> None:
    for path in (".venv", ".stack", ".git", "tests", "benchmarks", "config/example.yaml"):
        assert not dockerignore_allows(path), f"{path} would be sent to the build"
