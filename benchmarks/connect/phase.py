"""The second peer: a Kafka Connect worker (standalone) with the Debezium JDBC sink.

Runs on the JVM, from the jars ``make bench`` gathers into ``benchmarks/connect/libs``
(``mvn dependency:copy-dependencies`` on ``benchmarks/connect/pom.xml``); it is never a
dependency of Weir. One phase: the run's events copied into schema-carrying envelopes
(:mod:`benchmarks.connect.envelope`, before the clock), the tables made
(``tables.sql``), then ``ConnectStandalone`` started with the rendered worker and connector
properties and measured like every other phase: rows in PostgreSQL by their transactions'
start, CPU from wait4, peak RSS from VmHWM. A Connect worker does not stop by itself when
its topics are drained, so the phase waits until every event is a row, then stops it with
SIGTERM (its own graceful shutdown, counted in its CPU).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.connect import envelope
from benchmarks.env import BOOTSTRAP, DSN, ROOT, Names, execute
from benchmarks.weir_phase import Measured, ProcessCost, steady_rate, work_file

HERE = ROOT / "benchmarks" / "connect"
LIBS = HERE / "libs"
INSTALLED = LIBS / ".installed"
TABLES = ["orders", "page_views"]
MAIN = "org.apache.kafka.connect.cli.ConnectStandalone"
STOPPED = 128 + signal.SIGTERM  # the JVM's exit code after its SIGTERM shutdown
# What the Kafka release's bin/connect-standalone.sh and kafka-run-class.sh start a worker
# with (KAFKA_HEAP_OPTS and KAFKA_JVM_PERFORMANCE_OPTS), as a user gets it.
JVM = ["-Xms256M", "-Xmx2G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
       "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
       "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true"]


@dataclass(frozen=True)
class Settings:
    """How the connector is tuned: what a user would set on this machine."""

    tasks: int          # tasks.max: one per core, or the bench round's parallelism
    batch_size: int     # batch.size: Weir's batch.max_rows
    max_poll_records: int  # consumer.max.poll.records: a batch for each of the two tables

    @classmethod
    def for_machine(cls, batch_size: int, tasks: int | None = None) -> Settings:
        return cls(tasks=tasks or os.cpu_count() or 1, batch_size=batch_size,
                   max_poll_records=batch_size * len(TABLES))


def missing() -> str | None:
    """Why the phase cannot run here, or None."""
    if not INSTALLED.exists():
        return "benchmarks/connect/libs is missing (make bench fetches it)"
    if shutil.which("java") is None:
        return "java is not on PATH"
    return None


def versions() -> dict[str, str]:
    """Kafka Connect's and the connector's versions, from the gathered jars' names."""
    def version(prefix: str) -> str:
        jars = sorted(LIBS.glob(f"{prefix}-[0-9]*.jar"))
        return jars[0].stem.removeprefix(f"{prefix}-") if jars else "unknown"
    return {"connect": version("connect-runtime"),
            "debezium": version("debezium-connector-jdbc")}


def render(template: Path, target: Path, values: dict[str, str]) -> Path:
    """``template`` with each ``@NAME@`` replaced (as scripts/stack.sh renders its own)."""
    text = template.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    if left := re.findall(r"@[A-Z_]+@", text):
        raise ValueError(f"{template.name}: no value for {sorted(set(left))}")
    target.write_text(text)
    return target


def postgres_values() -> dict[str, str]:
    """The stack's PostgreSQL as a connector template's placeholders name its parts."""
    user, rest = DSN.removeprefix("postgresql://").split(":", 1)
    password, rest = rest.split("@", 1)
    host_port, database = rest.split("/", 1)
    return {"PG_HOST_PORT": host_port, "PG_DATABASE": database, "PG_USER": user,
            "PG_PASSWORD": password}


def worker_properties(folder: Path, max_poll_records: int) -> Path:
    """The standalone worker's properties, with its offsets file, written into ``folder``."""
    return render(HERE / "worker.properties.in", folder / "worker.properties", {
        "BOOTSTRAP": BOOTSTRAP, "OFFSETS": str(folder / "connect.offsets"),
        "MAX_POLL_RECORDS": str(max_poll_records)})


def properties(names: Names, settings: Settings, folder: Path,
               topics: dict[str, str] | None = None) -> tuple[Path, Path]:
    """The worker's and the connector's properties for one run, written into ``folder``
    (reading ``topics``, default ``names``' own)."""
    worker = worker_properties(folder, settings.max_poll_records)
    connector = render(HERE / "connector.properties.in", folder / "connector.properties", {
        "NAME": names.group, "TASKS": str(settings.tasks),
        "TOPICS": ",".join((topics or names.topics).values()), **postgres_values(),
        "BATCH_SIZE": str(settings.batch_size), "SCHEMA": names.schema})
    return worker, connector


def command(worker: Path, connector: Path) -> list[str]:
    """``java … ConnectStandalone worker.properties connector.properties``."""
    return ["java", *JVM, f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            "-cp", f"{LIBS}/*", MAIN, str(worker), str(connector)]


async def make_tables(schema: str) -> None:
    """``tables.sql`` into ``schema``."""
    await execute((HERE / "tables.sql").read_text().replace("@SCHEMA@", schema))


async def wait_for_rows(schema: str, expected: int, measured: Measured,
                        stall_s: float = 120.0) -> int:
    """Wait until ``schema``'s tables hold ``expected`` rows; return how many they hold.

    Progress is read from the statistics' insert counters (cheap, about a second behind);
    only when they reach ``expected`` are the rows counted, so the waiting does not load
    PostgreSQL while the connector writes. Gives up when the worker exits or nothing is
    inserted for ``stall_s``.
    """
    conn = await asyncpg.connect(DSN)
    try:
        seen, moved = -1, time.monotonic()
        while measured.running() and time.monotonic() - moved < stall_s:
            inserted = await conn.fetchval(
                "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables "
                "WHERE schemaname = $1", schema)
            if inserted >= expected and await _count(conn, schema) >= expected:
                break
            if inserted != seen:
                seen, moved = inserted, time.monotonic()
            await asyncio.sleep(0.5)
        return await _count(conn, schema)
    finally:
        await conn.close()


async def _count(conn: asyncpg.Connection, schema: str) -> int:
    counts = " + ".join(f"(SELECT count(*) FROM {schema}.{t})" for t in TABLES)
    return int(await conn.fetchval(f"SELECT {counts}"))


def stop(measured: Measured, patience_s: float = 60.0) -> ProcessCost:
    """SIGTERM (Connect's graceful shutdown), SIGKILL past ``patience_s``; its cost."""
    if measured.running():
        measured.proc.send_signal(signal.SIGTERM)
    try:
        return measured.wait(patience_s)
    except TimeoutError:
        measured.proc.kill()
        return measured.wait()


def prepare(source: Names, names: Names, partitions: int) -> dict[str, int]:
    """Before the clock: the envelope topics (a copy of ``source``'s) and the tables."""
    copied = asyncio.run(envelope.copy(source.topics, names.topics, partitions))
    asyncio.run(make_tables(names.schema))
    return copied


def measure(names: Names, events: int, copied: dict[str, int], batch_size: int,
            tasks: int | None = None, topics: dict[str, str] | None = None
            ) -> dict[str, Any]:
    """The worker from start to the last row and its stop; the phase's figures (into
    ``names``' schema, from ``topics``, by default ``names``' own)."""
    settings = Settings.for_machine(batch_size, tasks)
    # The worker's properties and its offsets file live and die with the phase.
    with tempfile.TemporaryDirectory(prefix="weir-bench-connect-") as tmp:
        worker, connector = properties(names, settings, Path(tmp), topics)
        measured = Measured(command(worker, connector),
                            work_file(f"{names.suffix}.connect.log"))
        try:
            rows = asyncio.run(wait_for_rows(names.schema, copied["records"], measured))
        finally:
            cost = stop(measured)
    steady = asyncio.run(steady_rate(names.schema, TABLES, events))
    v = versions()
    return {
        "name": f"Kafka Connect {v['connect']} + Debezium JDBC sink {v['debezium']}",
        "version": v, "tasks": settings.tasks,
        "batch_size": settings.batch_size,
        "max_poll_records": settings.max_poll_records,
        "events_per_s": round(steady["events_per_s"]), "rows": rows,
        "expected_rows": copied["records"],
        "wall_s": round(cost.wall_s, 2),
        "cpu_s": round(cost.cpu_s, 2),
        "cpu_s_per_million": round(cost.cpu_s / events * 1e6, 1),
        "peak_rss_mb": round(cost.max_rss_mb, 1),
        "exit_code": cost.exit_code,  # STOPPED when all went as planned
        "source_bytes_per_event": round(copied["source_bytes"] / max(events, 1)),
        "envelope_bytes_per_event": round(copied["envelope_bytes"] / max(events, 1)),
    }
