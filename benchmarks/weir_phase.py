"""Weir itself: throughput from a backlog, cost of the process, latency under a fixed load."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from benchmarks.env import DSN, WORK, execute, weir, weir_env
from processor.commands.produce.producer import ensure_topics
from processor.core.connections import kafka_client
from processor.core.settings import Settings


@dataclass(frozen=True)
class ProcessCost:
    """What one finished process used: CPU from wait4, peak RSS from VmHWM (its tree's)."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    exit_code: int
    largest_rss_mb: float = 0.0  # the peak of the largest single process of the tree
    processes: int = 1


def _peak_rss_kb(pid: int) -> int | None:
    """The process's own RSS high-water mark (VmHWM), or None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _watch_peak(pid: int, peaks: dict[int, int], done: threading.Event) -> None:
    """Keep each process's latest VmHWM, for ``pid`` and (every 0.5 s) its descendants.

    A high-water mark only grows, so it needs reading only until the process exits; the
    tree is walked less often because that scans /proc.
    """
    tick = 0
    while not done.wait(0.05):
        if tick % 10 == 0:
            for child in _descendants(pid):
                peaks.setdefault(child, 0)
        tick += 1
        for p in list(peaks):
            kb = _peak_rss_kb(p)
            if kb is not None:
                peaks[p] = max(peaks[p], kb)


class Measured:
    """A started process whose CPU and peak RSS are taken when it ends.

    CPU is user + sys from wait4, which includes every descendant the process waited for
    (``weir run --workers N``'s workers). Peak RSS is the sum of each process's own
    high-water mark (VmHWM) over the process and its descendants: for one process exactly
    its peak, for a supervisor and its workers an upper bound of their peak together (each
    one's peak, whenever it was). Not wait4's ``ru_maxrss``: Linux carries the parent's
    high-water mark over fork and exec, so a child of this harness (which holds the write
    ceiling's rows) would report at least the harness's own peak. VmHWM belongs to the
    exec'd program alone and only grows; it is read every 50 ms until the process exits (a
    new peak in its last 50 ms would be missed).
    """

    def __init__(self, cmd: list[str], log: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.started = time.perf_counter()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=weir_env() if env is None else env, cwd=cwd,
                                         stdout=out, stderr=subprocess.STDOUT)
        self._peaks = {self.proc.pid: 0}
        self._done = threading.Event()
        self._watcher = threading.Thread(target=_watch_peak,
                                         args=(self.proc.pid, self._peaks, self._done))
        self._watcher.start()

    def running(self) -> bool:
        """True until the process has exited (it is reaped only by :meth:`wait`)."""
        try:
            return os.waitid(os.P_PID, self.proc.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def wait(self, timeout: float | None = None) -> ProcessCost:
        """Wait for the exit (TimeoutError past ``timeout`` seconds); reap it; its cost."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"pid {self.proc.pid} still running after {timeout}s")
            time.sleep(0.05)
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        finally:
            self._done.set()
            self._watcher.join()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return ProcessCost(time.perf_counter() - self.started,
                           usage.ru_utime + usage.ru_stime,
                           sum(self._peaks.values()) / 1024, self.proc.returncode,
                           max(self._peaks.values()) / 1024, len(self._peaks))


def run_measured(cmd: list[str], log: Path, profile: Path | None = None,
                 cwd: Path | None = None, env: dict[str, str] | None = None) -> ProcessCost:
    """Run ``cmd`` to its end; its CPU time and peak RSS (see :class:`Measured`).

    ``cwd`` and ``env`` (default: this directory, :func:`weir_env`) let the A/B run another
    checkout's code (``benchmarks/ab.py``).
    """
    if profile is not None:
        # py-spy runs the command as its child: wait4 then reports py-spy, so the figures
        # of a profiled run are not the ones to quote (run.py says so in the results).
        spy = str(Path(sys.executable).with_name("py-spy"))
        cmd = [spy, "record", "--rate", "97", "--format", "raw", "-o", str(profile), "--", *cmd]
    return Measured(cmd, log, cwd, env).wait()


def ingested_union(schema: str, tables: list[str]) -> str:
    """Every row's ``ingested_at`` (its batch transaction's start) over ``tables``, as SQL."""
    return " UNION ALL ".join(f"SELECT ingested_at FROM {schema}.{t}" for t in tables)


async def steady_rate(schema: str, tables: list[str], events: int) -> dict[str, float]:
    """Events/s from the first committed batch to the last, by their transactions' start.

    ``ingested_at`` is ``now()``, the start of the batch's transaction. The rows of the first
    commit are left out and the clock starts there, so start-up (imports, group join, the
    first fetch) does not count and a sink that commits every few seconds is not flattered.
    Rows are scaled to events because transforms drop some events (``drop_bots``).
    """
    union = ingested_union(schema, tables)
    conn = await asyncpg.connect(DSN)
    try:
        row = await conn.fetchrow(
            f"WITH r AS ({union}), f AS (SELECT min(ingested_at) AS t0, max(ingested_at) AS t1 "
            "FROM r) SELECT (SELECT count(*) FROM r) AS n, "
            "(SELECT count(*) FROM r, f WHERE ingested_at > f.t0) AS later, f.t0, f.t1 FROM f")
    finally:
        await conn.close()
    assert row is not None  # an aggregate over f always returns its one row
    n = row["n"]
    span = max((row["t1"] - row["t0"]).total_seconds(), 1e-3) if n else 1.0
    return {"rows": n, "events_per_s": row["later"] / span * events / max(n, 1),
            "first_to_last_commit_s": round(span, 3)}


# A deferred constraint trigger runs at COMMIT, after every statement of the transaction:
# clock_timestamp() there is the commit time but for the WAL flush that follows it. It is
# put on the offsets table, which every batch transaction writes once (a statement of a few
# rows), so it costs one tiny insert per batch, not one per row; rows find their commit by
# their xmin, the id of the transaction that wrote them (as bigint: xid has no btree
# operator class; ids do not wrap within a benchmark).
COMMIT_CLOCK = """
CREATE TABLE IF NOT EXISTS {s}.bench_commits (xid bigint PRIMARY KEY, committed_at timestamptz);
CREATE OR REPLACE FUNCTION {s}.bench_commit_clock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.bench_commits VALUES (pg_current_xact_id()::xid::text::bigint, clock_timestamp())
  ON CONFLICT (xid) DO UPDATE SET committed_at = EXCLUDED.committed_at;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER bench_commit_clock AFTER INSERT OR UPDATE ON {s}.weir_offsets
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.bench_commit_clock();
"""


async def install_commit_clock(schema: str) -> None:
    """Record each batch transaction's commit time (see ``COMMIT_CLOCK``)."""
    await execute(COMMIT_CLOCK.format(s=schema))


async def broker_timestamps(settings: Settings) -> None:
    """Create the source topics of ``settings`` with the broker's append time as their
    records' timestamp (``LogAppendTime``), so that latency is counted from when Kafka has
    an event: the load generator's own send delay on a busy machine is then measured apart
    (:func:`latencies`' ``from_producer``)."""
    await ensure_topics(settings, settings.kafka.topic_partitions)
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, t.name,
                           configs={"message.timestamp.type": "LogAppendTime"})
            for t in settings.topics])
    finally:
        await admin.close()


async def latencies(schema: str, tables: list[str], since_ms: int) -> dict[str, Any]:
    """p50/p95/p99/max of commit time minus Kafka timestamp, records after ``since_ms``;
    ``from_producer``: the same from the events' own time (the producer's clock when it
    made them, to the millisecond), which adds the producer's send delay."""
    union = " UNION ALL ".join(
        f"SELECT kafka_timestamp, event_time, xmin::text::bigint AS x FROM {schema}.{t} "
        f"WHERE kafka_timestamp >= to_timestamp({since_ms / 1000})" for t in tables)

    def percentiles(name: str) -> str:
        return ", ".join(
            f"percentile_cont({q}) WITHIN GROUP (ORDER BY {name}) AS {name}{round(q * 100)}"
            for q in (0.5, 0.95, 0.99))
    conn = await asyncpg.connect(DSN)
    try:
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, count(j.xid) AS timed, {percentiles('p')}, "
            f"{percentiles('e')}, max(p) AS pmax FROM (SELECT c.xid, "
            "extract(epoch FROM c.committed_at - r.kafka_timestamp) * 1000 AS p, "
            "extract(epoch FROM c.committed_at - r.event_time) * 1000 AS e "
            f"FROM ({union}) r LEFT JOIN {schema}.bench_commits c ON c.xid = r.x) j")
    finally:
        await conn.close()
    assert row is not None  # an aggregate always returns its one row

    def ms(key: str) -> float | None:
        return round(float(row[key]), 1) if row[key] is not None else None
    return {"rows": row["n"], "rows_timed": row["timed"],
            **{k: ms(k) for k in ("p50", "p95", "p99", "pmax")},
            "from_producer": {f"p{q}": ms(f"e{q}") for q in (50, 95, 99)}}


def start_weir(config: Path, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    """``weir run --workers N`` in the background (the latency phases stop it with SIGTERM)."""
    out = log.open("wb")
    try:
        return subprocess.Popen(weir("run", "-c", str(config), "--workers", str(workers)),
                                env=weir_env(), stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def produce(config: Path, count: int, rate: float | None, seed: int = 7,
            rich: bool = False) -> dict[str, Any]:
    """``weir produce``: ``count`` sample events, paced at ``rate`` per second if given
    (``rich``: orders with what the example maps to columns)."""
    args = ["produce", "-c", str(config), "--count", str(count), "--seed", str(seed),
            "--no-progress", *(["--rich"] if rich else [])]
    if rate:
        args += ["--rate", str(rate)]
    started = time.perf_counter()
    done = subprocess.run(weir(*args), env=weir_env(), capture_output=True, text=True,
                          check=True)
    seconds = time.perf_counter() - started
    return {"events": count, "seconds": round(seconds, 2),
            "events_per_s": round(count / seconds), "output": done.stdout.strip()}


def work_file(name: str) -> Path:
    """A scratch file for logs and profiles (git-ignored)."""
    WORK.mkdir(parents=True, exist_ok=True)
    return WORK / name
