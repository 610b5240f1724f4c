"""Weir's rate over time on a backlog, with what PostgreSQL was doing meanwhile.

Produces ``--events`` sample events as fast as it can, then runs ``weir run
--until-caught-up`` on them into empty tables and samples every ``--every`` seconds: the
events stored (the watermarks in ``weir_offsets``, a few rows, never a ``count(*)`` of the
targets), the wait events of Weir's backends (``pg_stat_activity``), the dead tuples and HOT
updates of the rollup and offsets tables, WAL written and checkpoints. Afterwards the same
curve is rebuilt from the rows' ``ingested_at`` (their transaction's start), which costs the
run nothing. ``--poll-count`` also runs what a hand-made comparison polls, ``count(*)`` of
both targets every sample, to see what that polling costs the run.

    .venv/bin/python -m benchmarks.rate_curve --events 300000 --label base
    .venv/bin/python -m benchmarks.rate_curve --events 300000 --set event_types.order.rollups=[]

Each sample also takes Weir's resident memory (``VmRSS``), and the end of the run checks that
nothing was lost or written twice: the stored watermarks against the events produced, the
rows and dead letters against the events (with a configuration whose transforms drop none,
``--set 'event_types.page_view.transforms=[...]'``, the two must be equal), and the rows'
distinct Kafka coordinates against the rows. The 10,000,000-event backlog is
``--events 10000000`` with those settings.

Writes ``benchmarks/results/rate-curve-<date>-<sha>[-<label>].{json,md}``. Figures only:
nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import yaml

from benchmarks import weir_phase
from benchmarks.env import (
    DSN,
    ROOT,
    Names,
    drop,
    execute,
    git_sha,
    loadavg,
    weir,
    weir_env,
    write_config,
)

TABLES = ["orders", "page_views"]
PG_SETTINGS = """
import sys, asyncpg
create = asyncpg.create_pool
def with_settings(*args, **kwargs):
    kwargs["server_settings"] = {{**kwargs.get("server_settings", {{}}), **{0!r}}}
    return create(*args, **kwargs)
asyncpg.create_pool = with_settings
from processor.cli import main
sys.argv[0] = "weir"
main()
"""


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    p.add_argument("--poll-count", action="store_true",
                   help="also count(*) both target tables at every sample")
    p.add_argument("--label", default="", help="added to the results file's name")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="a config override by dotted path, e.g. batch.linger_ms=50 or "
                        "event_types.order.rollups=[] (YAML value)")
    p.add_argument("--code", action="append", default=[], metavar="DIR",
                   help="a checkout whose `weir run` to measure (PYTHONPATH); several are "
                        "run in turn on the same backlog, each into fresh tables")
    p.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                   help="a server setting for Weir's own sessions (e.g. wal_compression=lz4)")
    p.add_argument("--refill", action="store_true",
                   help="each later run: a new backlog of --events into the same tables, "
                        "by the same group (tables already full, not empty)")
    p.add_argument("--repeat", type=int, default=1, help="rounds over --code")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args()


def with_overrides(path: Path, pairs: list[str]) -> None:
    config = yaml.safe_load(path.read_text())
    for pair in pairs:
        key, value = pair.split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(config))


STORED = """(SELECT coalesce(sum(m), 0) FROM (SELECT max(next_offset) AS m FROM {s}.weir_offsets
        GROUP BY topic, partition) o)"""
SAMPLE = """
SELECT """ + STORED + """ AS stored,
       (SELECT pg_current_wal_lsn() - '0/0'::pg_lsn) AS wal_bytes,
       (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints,
       (SELECT buffers_backend FROM pg_stat_bgwriter) AS buffers_backend,
       (SELECT buffers_alloc FROM pg_stat_bgwriter) AS buffers_alloc,
       (SELECT wal_fpi FROM pg_stat_wal) AS wal_fpi,
       (SELECT wal_records FROM pg_stat_wal) AS wal_records
"""
TUPLES = """
SELECT relname, n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,
       pg_relation_size(relid) AS bytes
FROM pg_stat_user_tables WHERE schemaname = $1 AND relname IN ('orders_per_minute', 'weir_offsets')
"""
WAITS = """
SELECT wait_event_type, wait_event FROM pg_stat_activity
WHERE application_name = 'weir' AND state = 'active'
"""


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    """One process's resident memory now, in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process on this machine (the server is local)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            total += cpu_s(int(stat.parent.name))
    return total


async def sample_loop(names: Names, args: argparse.Namespace, proc: asyncio.subprocess.Process,
                      samples: list[dict[str, Any]]) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        t0 = time.monotonic()
        while proc.returncode is None:
            row = await conn.fetchrow(SAMPLE.format(s=names.schema))
            assert row is not None  # a SELECT without FROM returns its one row
            waits = Counter(f"{r['wait_event_type'] or 'CPU'}:{r['wait_event'] or '-'}"
                            for r in await conn.fetch(WAITS))
            tuples = {r["relname"]: dict(r) for r in await conn.fetch(TUPLES, names.schema)}
            counted = None
            if args.poll_count:
                counted = await conn.fetchval(
                    f"SELECT (SELECT count(*) FROM {names.schema}.orders) + "
                    f"(SELECT count(*) FROM {names.schema}.page_views)")
            samples.append({"t": round(time.monotonic() - t0, 2), "stored": int(row["stored"]),
                            "weir_cpu_s": cpu_s(proc.pid), "postgres_cpu_s": postgres_cpu_s(),
                            "weir_rss_mb": rss_mb(proc.pid),
                            "wal_bytes": int(row["wal_bytes"]),
                            "checkpoints": row["checkpoints"], "waits": dict(waits),
                            **{k: int(row[k]) for k in ("buffers_backend", "buffers_alloc",
                                                        "wal_fpi", "wal_records")},
                            "tables": tuples, "counted": counted})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), args.every)
    finally:
        await conn.close()


async def session(args: argparse.Namespace, names: Names, config: Path,
                  code: str) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    command = weir("run", "-c", str(config), "--until-caught-up")
    if args.pg_setting:
        # An experiment on the server's side for Weir's sessions alone (a superuser's setting
        # such as wal_compression): the pool's server settings get these added.
        command[1:3] = ["-c", PG_SETTINGS.format(dict(s.split("=", 1) for s in args.pg_setting))]
    proc = await asyncio.create_subprocess_exec(
        *command, env=weir_env() | {"PYTHONPATH": code}, cwd=code,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await sample_loop(names, args, proc, samples)
    wall = time.monotonic() - started
    steady = await weir_phase.steady_rate(names.schema, TABLES, args.events)
    union = weir_phase.ingested_union(names.schema, TABLES)
    conn = await asyncpg.connect(DSN)
    try:
        per_second = await conn.fetch(
            f"WITH r AS ({union}), f AS (SELECT min(ingested_at) AS t0 FROM r) "
            "SELECT floor(extract(epoch FROM ingested_at - f.t0))::int AS s, count(*) AS n "
            "FROM r, f GROUP BY 1 ORDER BY 1")
        rollup = await conn.fetchrow(
            f"SELECT count(*) AS buckets, coalesce(sum(orders), 0) AS orders FROM "
            f"{names.schema}.orders_per_minute") if not _no_rollup(args) else None
        complete = await completeness(conn, names.schema, args.events)
    finally:
        await conn.close()
    return {"exit_code": proc.returncode, "wall_s": round(wall, 2), "steady": steady,
            "rows_per_second": [(r["s"], r["n"]) for r in per_second], "samples": samples,
            "rollup": dict(rollup) if rollup else None, "complete": complete}


async def completeness(conn: asyncpg.Connection, schema: str, events: int) -> dict[str, Any]:
    """What the run stored, against the events produced: nothing lost, nothing twice."""
    stored = await conn.fetchval("SELECT " + STORED.format(s=schema))
    union = " UNION ALL ".join(f"SELECT kafka_topic, kafka_partition, kafka_offset FROM "
                               f"{schema}.{t}" for t in TABLES)
    counts = await conn.fetchrow(
        "SELECT count(*) AS rows, count(DISTINCT (kafka_topic, kafka_partition, kafka_offset))"
        f" AS distinct_coordinates FROM ({union}) r")
    dead = await conn.fetchval(f"SELECT count(*) FROM {schema}.weir_dead_letters")
    assert counts is not None  # an aggregate returns its one row
    rows, distinct = counts["rows"], counts["distinct_coordinates"]
    return {"events": events, "stored_watermarks": int(stored), "rows": rows,
            "distinct_coordinates": distinct, "dead_letters": dead,
            "nothing_lost": int(stored) == events and rows + dead == events,
            "nothing_twice": distinct == rows}


def _no_rollup(args: argparse.Namespace) -> bool:
    return any(s.replace(" ", "") == "event_types.order.rollups=[]" for s in args.set)


def curve(samples: list[dict[str, Any]], window_s: float = 2.0) -> list[tuple[float, int]]:
    """Events/s over each ``window_s`` from the stored watermarks."""
    out: list[tuple[float, int]] = []
    last = None
    for s in samples:
        if s["stored"] == 0:
            continue
        if last is None:
            last = s
        elif s["t"] - last["t"] >= window_s:
            out.append((s["t"], round((s["stored"] - last["stored"]) / (s["t"] - last["t"]))))
            last = s
    return out


def fifths(samples: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per fifth of the events stored: events/s, WAL bytes and full-page images per event,
    buffers written by backends themselves (no clean buffer to take) per 1,000 events."""
    base = samples[0]["stored"] if samples else 0  # a refill run starts on full tables
    active = [s for s in samples if s["stored"] > base]
    if len(active) < 6:
        return []
    first = active[0]["stored"]
    total = active[-1]["stored"] - first
    out = []
    start = active[0]
    for k in range(1, 6):
        end = next(s for s in active if s["stored"] - first >= total * k / 5)
        n = max(end["stored"] - start["stored"], 1)
        out.append({"events_per_s": round(n / max(end["t"] - start["t"], 1e-3)),
                    "wal_bytes_per_event": round((end["wal_bytes"] - start["wal_bytes"]) / n),
                    "fpi_per_1k_events": round((end["wal_fpi"] - start["wal_fpi"]) * 1000 / n, 1),
                    "backend_writes_per_1k_events": round(
                        (end["buffers_backend"] - start["buffers_backend"]) * 1000 / n, 1),
                    "checkpoints": end["checkpoints"] - start["checkpoints"],
                    **{f"{who}_cores": round((end[f"{who}_cpu_s"] - start[f"{who}_cpu_s"])
                                             / max(end["t"] - start["t"], 1e-3), 2)
                       for who in ("weir", "postgres")},
                    **{f"{who}_cpu_us_per_event": round(
                        (end[f"{who}_cpu_s"] - start[f"{who}_cpu_s"]) * 1e6 / n, 1)
                       for who in ("weir", "postgres")},
                    "lock_waits_per_sample": round(sum(
                        s["waits"].get("Lock:transactionid", 0) for s in active
                        if start["t"] < s["t"] <= end["t"]) / max(1, sum(
                            1 for s in active if start["t"] < s["t"] <= end["t"])), 2)})
        start = end
    return out


def thirds(per_second: list[tuple[int, int]], events: int, rows: int) -> list[int]:
    """Mean events/s over the first, middle and last third of the run (by ``ingested_at``)."""
    if len(per_second) < 3:
        return []
    scale = events / max(rows, 1)
    end = per_second[-1][0] + 1
    out = []
    for k in range(3):
        lo, hi = end * k / 3, end * (k + 1) / 3
        out.append(round(sum(n for s, n in per_second if lo <= s < hi) * scale / (hi - lo)))
    return out


def summarize(args: argparse.Namespace, run: dict[str, Any], load: list[float],
              after: list[float]) -> dict[str, Any]:
    label = f"-{args.label}" if args.label else ""
    samples = run["samples"]
    waits: Counter[str] = Counter()
    for s in samples:
        waits.update(s["waits"])
    active = [s for s in samples if s["stored"]]
    rows = run["steady"]["rows"]
    return {
        "name": f"rate-curve-{datetime.now(UTC).strftime('%Y-%m-%d')}-{git_sha()}{label}",
        "events": args.events, "settings": args.set, "poll_count": args.poll_count,
        "load_before": load, "load_after": after, "exit_code": run["exit_code"],
        "wall_s": run["wall_s"], "events_per_s": round(run["steady"]["events_per_s"]),
        "rows": rows, "thirds_events_per_s": thirds(run["rows_per_second"], args.events, rows),
        "curve_events_per_s": curve(samples),
        "per_second_rows": run["rows_per_second"],
        "waits_per_sample": {k: round(v / max(len(samples), 1), 2)
                             for k, v in waits.most_common(12)},
        "wal_mb": round((samples[-1]["wal_bytes"] - samples[0]["wal_bytes"]) / 2**20, 1)
        if samples else 0,
        "checkpoints": samples[-1]["checkpoints"] - samples[0]["checkpoints"] if samples else 0,
        **{k: samples[-1][k] - samples[0][k] if samples else 0
           for k in ("buffers_backend", "buffers_alloc", "wal_fpi", "wal_records")},
        "by_fifths": fifths(samples),
        "tables_at_end": active[-1]["tables"] if active else {},
        "rollup": run["rollup"], "complete": run["complete"],
        "rss_mb": rss_summary(active), "samples": samples,
    }


def rss_summary(active: list[dict[str, Any]]) -> dict[str, Any]:
    """Weir's resident memory over the run: at the end of each tenth of the events stored,
    and the largest sample."""
    if not active:
        return {}
    first, last = active[0]["stored"], active[-1]["stored"]
    tenths = []
    for k in range(1, 11):
        mark = first + (last - first) * k / 10
        tenths.append(next(s["weir_rss_mb"] for s in active if s["stored"] >= mark))
    return {"by_tenths": tenths, "max": max(s["weir_rss_mb"] for s in active)}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Rate over time: {r['name']}", "",
             f"{r['events']} events, settings {r['settings'] or 'example'}, count(*) polling "
             f"{'on' if r['poll_count'] else 'off'}, load {r['load_before']} → {r['load_after']}.",
             "", f"- events/s first to last commit: {r['events_per_s']}; by thirds of the run "
             f"(from `ingested_at`): {r['thirds_events_per_s']}",
             f"- WAL {r['wal_mb']} MB, checkpoints {r['checkpoints']}, full-page images "
             f"{r['wal_fpi']}, buffers written by backends {r['buffers_backend']}", "",
             "| fifth of the events | events/s | WAL B/event | FPI/1k ev | backend writes/1k ev "
             "| checkpoints | lock waits/sample | Weir cores, µs/event | PostgreSQL cores, "
             "µs/event |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             *[f"| {i + 1} | {f['events_per_s']} | {f['wal_bytes_per_event']} | "
               f"{f['fpi_per_1k_events']} | {f['backend_writes_per_1k_events']} | "
               f"{f['checkpoints']} | {f['lock_waits_per_sample']} | {f['weir_cores']}, "
               f"{f['weir_cpu_us_per_event']} | {f['postgres_cores']}, "
               f"{f['postgres_cpu_us_per_event']} |"
               for i, f in enumerate(r["by_fifths"])], "",
             f"- wait events of Weir's active backends, mean per sample: {r['waits_per_sample']}",
             f"- at the end: {r['tables_at_end']}", f"- rollup: {r['rollup']}",
             f"- Weir's RSS (MiB) at each tenth of the events stored: "
             f"{r['rss_mb'].get('by_tenths')}, largest sample {r['rss_mb'].get('max')}",
             f"- complete: {r['complete']}", "",
             "| t (s) | events/s (stored watermarks, 2 s windows) |", "|---:|---:|"]
    lines += [f"| {t} | {v} |" for t, v in r["curve_events_per_s"]]
    return "\n".join(lines) + "\n"


def run_config(names: Names, k: int, args: argparse.Namespace) -> tuple[Names, Path]:
    """The k-th run's config: the produced topics, a group and schema of its own."""
    own = Names(f"{names.suffix}_{k}")
    config = write_config(names, args.partitions)
    data = yaml.safe_load(config.read_text())
    data["kafka"]["group_id"] = own.group
    data["postgres"]["schema_name"] = own.schema
    config = config.with_name(f"{own.suffix}.yaml")
    config.write_text(yaml.safe_dump(data))
    with_overrides(config, args.set)
    subprocess.run(weir("migrate", "-c", str(config)), env=weir_env(), check=True,
                   capture_output=True)
    return own, config


def checkout(code: str) -> str:
    """The commit a checkout is at, ``-dirty`` with changes (names no folder)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", code, *args], capture_output=True, text=True,
                              check=False).stdout.strip()
    return (git("rev-parse", "--short", "HEAD") or "unknown") + (
        "-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


async def drop_schema(schema: str) -> None:
    await execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> int:
    args = parse()
    names = Names.fresh("r")
    codes = args.code or [str(ROOT)]
    config = write_config(names, args.partitions)
    try:
        weir_phase.produce(config, args.events, None)
        runs = args.repeat * len(codes)
        own, own_config = run_config(names, 0, args)
        for k in range(runs):
            code = codes[k % len(codes)]
            if k and args.refill:
                # The same group and tables: a second backlog into tables already full.
                weir_phase.produce(config, args.events, None, seed=7 + k)
            elif k:
                asyncio.run(drop_schema(own.schema))
                own, own_config = run_config(names, k, args)
            load = loadavg()
            try:
                run = asyncio.run(session(args, own, own_config, code))
            except BaseException:
                asyncio.run(drop_schema(own.schema))
                raise
            if k == runs - 1:
                asyncio.run(drop_schema(own.schema))
            result = summarize(args, run, load, loadavg())
            result["code"] = checkout(code)
            result["pg_settings"] = args.pg_setting
            result["name"] += f"-{k}-{checkout(code)}" if args.code else ""
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{result['name']}.json"
            path.write_text(json.dumps(result, indent=1, default=str))
            path.with_suffix(".md").write_text(markdown(result))
            print(markdown(result).split("| t (s)")[0], flush=True)
    finally:
        asyncio.run(drop([names]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
