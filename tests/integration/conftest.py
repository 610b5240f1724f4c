"""Integration fixtures: real Kafka and PostgreSQL from `make up`, isolated per test.

Each test gets its own topics, consumer group and PostgreSQL schema, so tests never see
each other's data, and a failing test leaves evidence (logs under its tmp_path) behind.
If the stack is not running, the tests fail with the command to start it: a skipped
integration suite must never look green.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import yaml

from tests.integration.servers import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
KAFKA = f"127.0.0.1:{os.environ.get('WEIR_KAFKA_PORT', '19092')}"
PG_ADDRESS = f"127.0.0.1:{os.environ.get('WEIR_PG_PORT', '15432')}"
PG_DSN = f"postgresql://weir:weir@{PG_ADDRESS}/weir"
REGISTRY_ADDRESS = f"127.0.0.1:{os.environ.get('WEIR_REGISTRY_PORT', '18081')}"
REGISTRY = f"http://{REGISTRY_ADDRESS}/apis/ccompat/v7"

def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``integration`` (a ``pytestmark`` in a conftest would
    be ignored), so ``-m "not integration"`` runs exactly the tests that need no servers."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def _reachable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def stack_running() -> None:
    """Fail fast, with the fix, when the local stack is down."""
    for name, address in (("Kafka", KAFKA), ("PostgreSQL", PG_ADDRESS),
                          ("the schema registry", REGISTRY_ADDRESS)):
        if not _reachable(address):
            pytest.fail(f"{name} is not answering on {address}: run `make up` first")


def base_env() -> dict[str, str]:
    """The test process environment without WEIR_* overrides from the caller's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}


# Rows written to both example tables: what tests wait on.
ROWS = "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM page_views)"


class Harness:
    """One isolated pipeline: its config, its `weir` processes and its SQL."""

    def __init__(self, tmp_path: Path, partitions: int = 6, dsn: str = PG_DSN,
                 env: dict[str, str] | None = None, sql_dsn: str | None = None,
                 **overrides: Any) -> None:
        """``overrides`` are merged into the config by section; ``env`` is added to the
        environment of every `weir` process; ``sql_dsn`` is what the test's own queries use
        (default: ``dsn``)."""
        suffix = uuid.uuid4().hex[:8]
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.dsn = sql_dsn or dsn
        self.env = dict(env or {})
        self.tmp = tmp_path
        self.schema = f"it_{suffix}"
        self.group = f"it-{suffix}"
        self.topics = {"order": f"it.{suffix}.orders", "page_view": f"it.{suffix}.page_views"}
        config: dict[str, Any] = {
            "kafka": {"bootstrap_servers": KAFKA, "group_id": self.group,
                      "topic_partitions": partitions, "session_timeout_ms": 6000,
                      "heartbeat_interval_ms": 1000},
            "postgres": {"dsn": dsn, "schema_name": self.schema, "pool_size": 4},
            "batch": {"max_rows": 2000, "linger_ms": 50},
            "pipeline": {"lanes": 3, "shutdown_timeout_s": 20},
            "metrics": {"enabled": False},
            "logging": {"format": "json"},
            "dead_letters": {"spool_dir": str(tmp_path / "spool")},  # not the working dir
            "event_types": {
                "order": {"schema_file": str(ROOT / "schemas/order.v1.json"), "table": "orders",
                          "id_field": "event_id", "time_field": "occurred_at",
                          "key_field": "customer_id",
                          "transforms": ["processor.transform.examples:normalize_currency"]},
                "page_view": {"schema_file": str(ROOT / "schemas/page_view.v1.json"),
                              "table": "page_views", "id_field": "event_id",
                              "time_field": "occurred_at", "key_field": "user_id",
                              "transforms": ["processor.transform.examples:strip_url_query"]},
            },
            "topics": [{"name": self.topics["order"], "event_type": "order"},
                       {"name": self.topics["page_view"], "event_type": "page_view"}],
        }
        _merge(config, overrides)
        self.config = tmp_path / "weir.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.procs: list[subprocess.Popen[bytes]] = []
        self._names: dict[int, str] = {}
        self.ack_log = tmp_path / "acks.jsonl"

    def rewrite(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Change the config file in place (``change`` edits its mapping); the new config."""
        config: dict[str, Any] = yaml.safe_load(self.config.read_text())
        change(config)
        self.config.write_text(yaml.safe_dump(config))
        return config

    def weir_command(self, *args: str) -> list[str]:
        """The argv of one `weir` command against this harness's config."""
        config = [str(self.config)] if args[0] == "check-config" else ["--config", str(self.config)]
        return [sys.executable, "-m", "processor", *args, *config]

    def process_env(self) -> dict[str, str]:
        """The environment `weir` processes of this harness run with."""
        return {**base_env(), **self.env}

    def weir(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one `weir` command to completion."""
        return subprocess.run(
            self.weir_command(*args), capture_output=True, text=True, timeout=timeout,
            env=self.process_env(), check=False,
        )

    def migrate(self) -> None:
        result = self.weir("migrate")
        assert result.returncode == 0, result.stderr

    def produce(self, count: int, *extra: str, ack: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        acks = ["--ack-log", str(self.ack_log)] if ack else []
        result = self.weir("produce", "--count", str(count), *acks, "--no-progress", *extra,
                           timeout=timeout)
        assert result.returncode == 0, result.stderr
        return result

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        """Start `weir run` in the background, logging to ``<tmp>/<name>.log``."""
        with (self.tmp / f"{name}.log").open("ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [sys.executable, "-m", "processor", "run", "--config", str(self.config), *extra],
                stdout=log, stderr=subprocess.STDOUT, env={**base_env(), **self.env},
            )
        self.procs.append(proc)
        self._names[proc.pid] = name
        return proc

    def why_exited(self, proc: subprocess.Popen[bytes]) -> str:
        """The exit code and the last lines of a process's log, for an assertion message."""
        name = self._names.get(proc.pid)
        tail = ""
        if name is not None:
            tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]
        return f"weir exited early with {proc.returncode}; last of its log:\n{tail}"

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        lines = []
        for raw in (self.tmp / f"{name}.log").read_bytes().splitlines():
            try:
                lines.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue  # a traceback line; the JSON lines carry what tests check
        return lines

    def not_json(self, name: str) -> list[str]:
        """The lines of a process's log that are not a JSON object with a level."""
        bad = []
        for raw in (self.tmp / f"{name}.log").read_bytes().splitlines():
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad.append(raw.decode(errors="replace"))
                continue
            if not isinstance(line, dict) or "level" not in line:
                bad.append(raw.decode(errors="replace"))
        return bad

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def go() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f"SET search_path TO {self.schema}")
                return await conn.fetch(query, *args)
            finally:
                await conn.close()
        return asyncio.run(go())

    def scalar(self, query: str, *args: Any) -> Any:
        return self.sql(query, *args)[0][0]

    def wait_for(self, query: str, expected: Any, timeout: float, *,
                 alive: list[subprocess.Popen[bytes]] | None = None) -> None:
        """Poll until ``query`` returns ``expected``; fail early if a process died."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.scalar(query)
            if value == expected:
                return
            for proc in alive or []:
                assert proc.poll() is None, self.why_exited(proc)
            time.sleep(0.5)
        stacks = "".join(self.stacks(proc) for proc in alive or [])
        raise AssertionError(
            f"{query!r} is {value!r}, expected {expected!r} after {timeout}s{stacks}")

    def stacks(self, proc: subprocess.Popen[bytes]) -> str:
        """Every thread's and task's stack in a live `weir` process, for a failure message
        about a process that is alive but makes no progress."""
        if proc.poll() is not None:
            return ""
        spy = Path(sys.executable).parent / "py-spy"
        dump = subprocess.run([str(spy), "dump", "--pid", str(proc.pid)],
                              capture_output=True, text=True, timeout=60, check=False)
        return f"\nstacks of {self._names.get(proc.pid)}:\n{dump.stdout}{dump.stderr}"

    def acks(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.ack_log.read_bytes().splitlines()]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        self.sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        subprocess.run(
            [sys.executable, "-c", _DELETE_TOPICS, KAFKA, *self.topics.values()],
            check=False, timeout=60, capture_output=True,
        )


@contextlib.contextmanager
def two_roles(h: Harness) -> Iterator[tuple[str, str, str]]:
    """A migration role and a runtime role for ``h``'s schema (``scripts/pg-roles.sh``),
    dropped afterwards: ``(migrator, runtime, suffix)``; passwords ``m-``/``r-`` + suffix."""
    suffix = uuid.uuid4().hex[:8]
    migrator, runtime = f"mig_{suffix}", f"run_{suffix}"
    env = {**os.environ, "WEIR_MIGRATOR_PASSWORD": "m-" + suffix,
           "WEIR_RUNTIME_PASSWORD": "r-" + suffix}
    roles = subprocess.run(["bash", str(ROOT / "scripts/pg-roles.sh"), PG_DSN, h.schema,
                            migrator, runtime], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert roles.returncode == 0, roles.stderr
    try:
        yield migrator, runtime, suffix
    finally:
        h.cleanup()
        h.sql(f"DROP OWNED BY {migrator}, {runtime} CASCADE")
        h.sql(f"DROP ROLE IF EXISTS {runtime}")
        h.sql(f"DROP ROLE IF EXISTS {migrator}")


def as_role(h: Harness, role: str, password: str) -> None:
    """Run ``h``'s `weir` commands as ``role`` on the shared PostgreSQL."""
    h.env.update({"WEIR_POSTGRES__DSN": f"postgresql://{role}@{PG_DSN.split('@')[1]}",
                  "WEIR_POSTGRES__PASSWORD": password})


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge ``extra`` into ``into``: nested mappings merge, other values replace."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


_DELETE_TOPICS = """
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1])
    await admin.start()
    try:
        await admin.delete_topics(sys.argv[2:])
    finally:
        await admin.close()
asyncio.run(main())
"""


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of the test's own, for faults (freeze, restart, stop) that would
    disturb other tests on the shared stack."""
    pg = PrivatePostgres().start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A migrated, isolated pipeline; cleaned up afterwards."""
    h = Harness(tmp_path)
    h.migrate()
    try:
        yield h
    finally:
        h.cleanup()
