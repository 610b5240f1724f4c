"""The benchmark's surroundings: names, config files, machine facts, load and clean-up."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = "127.0.0.1:19092"
DSN = "postgresql://weir:weir@127.0.0.1:15432/weir"
# The stack's Apicurio Registry, by its Confluent-compatible API (as scripts/stack.sh names it).
REGISTRY = "http://127.0.0.1:18081/apis/ccompat/v7"
WORK = ROOT / "benchmarks" / "results" / "tmp"


@dataclass(frozen=True)
class Names:
    """Isolated topics, group and schema for one phase of one run."""

    suffix: str

    @classmethod
    def fresh(cls, tag: str) -> Names:
        """New names: nothing another run or test uses."""
        return cls(f"{tag}{uuid.uuid4().hex[:8]}")

    @property
    def group(self) -> str:
        return f"bench-{self.suffix}"

    @property
    def schema(self) -> str:
        return f"bench_{self.suffix}"

    @property
    def topics(self) -> dict[str, str]:
        """Event type → topic."""
        return {"order": f"bench.{self.suffix}.orders",
                "page_view": f"bench.{self.suffix}.page_views"}

    @property
    def subjects(self) -> list[str]:
        """The registry subjects of the topics (TopicNameStrategy: ``<topic>-value``)."""
        return [f"{t}-value" for t in self.topics.values()]


def write_config(names: Names, partitions: int, overrides: dict[str, Any] | None = None,
                 topics: dict[str, str] | None = None, fmt: str = "json",
                 mapped: bool = False, children: bool = True) -> Path:
    """A copy of the example pipeline's config pointed at ``names`` (or other ``topics``).

    ``fmt`` other than ``json`` is every topic's ``format``, read through :data:`REGISTRY`.
    Without ``mapped``, the orders' mapped columns, child rows and the indexes for them are
    left out: the example as it was before them, the workload every other
    phase (and the peers) measures; with it, the example as it ships (without its child
    tables unless ``children``).
    """
    config = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    if not mapped:
        unmapped(config["event_types"]["order"])
    elif not children:
        config["event_types"]["order"].pop("children", None)
    config["kafka"] |= {"group_id": names.group, "topic_partitions": partitions}
    config["postgres"] |= {"dsn": DSN, "schema_name": names.schema}
    config["metrics"] = {"enabled": False}
    config["logging"] = {"format": "json", "level": "warning"}
    for et in config["event_types"].values():
        et["schema_file"] = str(ROOT / "schemas" / Path(et["schema_file"]).name)
    config["topics"] = [{"name": t, "event_type": et}
                        for et, t in (topics or names.topics).items()]
    if fmt != "json":
        config["schema_registry"] = {"url": REGISTRY}
        for topic in config["topics"]:
            topic["format"] = fmt
    for section, values in (overrides or {}).items():
        config.setdefault(section, {}).update(values)
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{names.suffix}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def unmapped(event_type: dict[str, Any]) -> None:
    """An event type's config without what analysts map (in place): its mapped columns,
    child tables, and the indexes for them (on a mapped column, or GIN: the tags')."""
    names = {c["name"] for c in event_type.pop("columns", [])}
    event_type.pop("children", None)
    event_type["indexes"] = [i for i in event_type.get("indexes", [])
                             if not names & set(i["columns"]) and i.get("method") != "gin"]


def weir_env() -> dict[str, str]:
    """This process's environment without WEIR_* overrides from the caller's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}


def weir(*args: str) -> list[str]:
    """The command line of one ``weir`` command, run by this interpreter."""
    return [sys.executable, "-m", "processor", *args]


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def git_sha() -> str:
    """The short commit of the work tree, with ``-dirty`` when it has changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import aiokafka
    import asyncpg
    import orjson
    import psutil

    mem = psutil.virtual_memory().total
    kafka = sorted((ROOT / ".stack" / "kafka" / "libs").glob("kafka-clients-*.jar"))
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": kafka[0].stem.removeprefix("kafka-clients-") if kafka else "unknown",
        "aiokafka": aiokafka.__version__,
        "asyncpg": asyncpg.__version__,
        "orjson": orjson.__version__,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def execute(sql: str) -> None:
    """Run ``sql`` (one statement, or several without parameters) on the stack's database,
    on a connection of its own."""
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drop(names: list[Names]) -> None:
    """Delete what ``names`` made (the run's own, never anyone else's).

    Their PostgreSQL schemas, topics (and the dead-letter topics ``weir migrate`` makes beside
    them), consumer groups and registry subjects (with their schemas).
    """
    import asyncpg
    from aiokafka.admin import AIOKafkaAdminClient

    conn = await asyncpg.connect(DSN)
    try:
        for n in names:
            await conn.execute(f"DROP SCHEMA IF EXISTS {n.schema} CASCADE")
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        # The dead-letter topics too, which `weir migrate` makes beside the sources.
        topics = [name for n in names for t in n.topics.values()
                  for name in (t, f"{t}.dlq") if name in existing]
        if topics:
            await admin.delete_topics(topics)
        await _delete_groups(admin, [n.group for n in names])
    finally:
        await admin.close()
    drop_subjects([s for n in names for s in n.subjects])


async def _delete_groups(admin: Any, groups: list[str]) -> None:
    """Delete those of ``groups`` the cluster knows (best effort: a group still in use stays).

    aiokafka's admin client has no call for it, so the DeleteGroups request goes to each
    group's coordinator as its own calls do.
    """
    from aiokafka.protocol.admin import DeleteGroupsRequest

    known = {g[0] for g in await admin.list_consumer_groups()}
    for group in (g for g in groups if g in known):
        try:
            coordinator = await admin.find_coordinator(group)
            await admin._send_request(DeleteGroupsRequest([group]), coordinator)
        except Exception as exc:  # noqa: BLE001 - clean-up must not hide the run's results
            print(f"[bench] consumer group {group} not deleted: {exc}", flush=True)


def drop_subjects(subjects: list[str]) -> None:
    """Delete those of ``subjects`` the registry holds, with their schema versions.

    Soft, then permanent (Confluent's two steps; Apicurio deletes at the first). Nothing to
    do when the registry does not answer: then nothing was registered.
    """
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    def call(method: str, path: str) -> Any:
        request = urllib.request.Request(REGISTRY + path, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return json.loads(answer.read() or b"null")

    try:
        held = set(call("GET", "/subjects"))
    except (OSError, ValueError):
        return
    for subject in (s for s in subjects if s in held):
        for suffix in ("", "?permanent=true"):
            try:
                call("DELETE", f"/subjects/{quote(subject, safe='')}{suffix}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # already gone: Apicurio deletes at the first call
                    print(f"[bench] subject {subject}: {exc}", flush=True)
