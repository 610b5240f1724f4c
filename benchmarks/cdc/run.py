"""``make bench-cdc``: Debezium change events into a mirror table, Weir and the Debezium
JDBC sink on the same change topics.

Before any clock, ``--changes`` seeded change events of a ``customers`` table (creates,
updates, deletes with their tombstones; :mod:`benchmarks.cdc.changes`) go to a change topic
of the run's own. Then, for each parallelism of ``--workers``: Weir (``weir run
--until-caught-up --workers N``, ``envelope: debezium``) into an empty mirror, and the
Debezium JDBC sink in a Kafka Connect worker (``tasks.max`` = N, the jars ``make bench``
gathers into ``benchmarks/connect/libs``) into an empty table of the same shape, stopped
once its table equals the model. Both measured as every phase of ``make bench``: changes/s
from the rows' transactions, CPU from wait4, peak RSS from VmHWM. Each table is compared
with the model row by row; a system whose table does not equal it is reported partial or
wrong and no ratio is judged on it. Results go to
``benchmarks/results/<date>-cdc-<sha>.{json,md}``. See docs/performance.md ("CDC").

    .venv/bin/python -m benchmarks.cdc.run --changes 20000     # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncpg
import orjson
import yaml

from benchmarks import report, weir_phase
from benchmarks.ab import Side
from benchmarks.cdc import changes
from benchmarks.cdc.changes import TABLE, Canonical, Check, Workload
from benchmarks.connect import phase as connect_phase
from benchmarks.env import (
    DSN,
    ROOT,
    WORK,
    Names,
    drop,
    execute,
    git_sha,
    loadavg,
    machine,
    weir,
    weir_env,
)
from benchmarks.run import stack_answers, wait_for_quiet

HERE = ROOT / "benchmarks" / "cdc"
# The row of the source table as Weir's contract describes it (what `weir cdc-contract`
# derives from the events' schema). updated_at is a timestamp without a zone, which Debezium
# sends as epoch microseconds (MicroTimestamp): the embedded schema says so, and the decoder
# reads it as the time it stands for.
CONTRACT = {
    "type": "object", "required": ["id", "name", "active", "created_at", "external_id"],
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "email": {"type": ["string", "null"]}, "balance": {"type": ["number", "null"]},
        "active": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
        "external_id": {"type": "string", "format": "uuid"}}}
# The sink's table: the source table's columns and types (a timestamp stays a timestamp),
# and ingested_at, the start of the transaction that last wrote the row, as Weir's tables
# have it: the sink's upsert sets only the record's columns, so a trigger renews it.
JDBC_TABLE = """
CREATE SCHEMA {s};
CREATE TABLE {s}.customers (id bigint PRIMARY KEY, name text NOT NULL, email text,
  balance numeric, active boolean NOT NULL, updated_at timestamp,
  created_at timestamptz NOT NULL, external_id uuid NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION {s}.renew_ingested_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.ingested_at := now(); RETURN NEW; END $$;
CREATE TRIGGER renew_ingested_at BEFORE UPDATE ON {s}.customers
  FOR EACH ROW EXECUTE FUNCTION {s}.renew_ingested_at();
"""


@dataclass(frozen=True)
class CdcNames(Names):
    """A run's (or a phase's) names, with the change topic in place of the sample topics."""

    @property
    def topics(self) -> dict[str, str]:
        """Event type → topic: the one change topic."""
        return {"customer": f"bench.{self.suffix}.cdc.{TABLE}"}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--changes", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="parallelisms: Weir's --workers and the sink's tasks.max")
    p.add_argument("--no-connect", action="store_true", help="skip the Debezium JDBC sink")
    p.add_argument("--no-weir", action="store_true", help="skip Weir (the sink alone)")
    p.add_argument("--weir-ref", default=None,
                   help="run Weir from a checkout of this git ref (default: the work tree)")
    p.add_argument("--stall-seconds", type=float, default=120.0,
                   help="give the sink up when its table has not changed for this long")
    p.add_argument("--max-load", type=float, default=None,
                   help="wait (up to 10 min) until the 1-minute load is below this first")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args()


class Run:
    """One run: its data, the names to clean up, the figures and the load around phases."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = CdcNames.fresh("cdc")
        self.names: list[Names] = [self.data]
        self.load: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.expected: list[Canonical] = []
        self.batch_rows = int(yaml.safe_load(
            (ROOT / "config" / "example.yaml").read_text())["batch"]["max_rows"])

    @property
    def topic(self) -> str:
        return self.data.topics["customer"]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """The load before and after ``name``, and its seconds; a quiet, checkpointed
        server before it, so that no phase inherits another's dirty buffers."""
        if self.args.max_load is not None and name.startswith(("weir", "jdbc")):
            wait_for_quiet(self.args.max_load)
        # Every phase starts with the WAL and shared buffers written out alike.
        asyncio.run(execute("CHECKPOINT"))
        print(f"[bench-cdc] {name} (load {loadavg()})", flush=True)
        self.load[name] = {"before": loadavg()}
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = round(time.perf_counter() - started, 1)
            self.load[name] |= {"after": loadavg(), "seconds": seconds}
            print(f"[bench-cdc] {name} took {seconds}s", flush=True)


def weir_config(names: Names, topic: str, partitions: int) -> Path:
    """The example's settings (batches, lanes, pool) with one mirror event type on
    ``topic``, into ``names``' schema and group."""
    config = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    config.pop("schema_registry", None)
    config["kafka"] |= {"group_id": names.group, "topic_partitions": partitions}
    config["postgres"] |= {"dsn": DSN, "schema_name": names.schema}
    config["metrics"] = {"enabled": False}
    config["logging"] = {"format": "json", "level": "warning"}
    WORK.mkdir(parents=True, exist_ok=True)
    contract = WORK / f"{names.suffix}.customer.json"
    contract.write_bytes(orjson.dumps(CONTRACT))
    config["event_types"] = {"customer": {
        "schema_file": str(contract), "table": TABLE, "envelope": "debezium",
        "write_mode": "upsert", "upsert_key": ["id"], "key_field": "id"}}
    config["topics"] = [{"name": topic, "event_type": "customer"}]
    path = WORK / f"{names.suffix}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def figures(names: Names, cost: weir_phase.ProcessCost, result: Check, run: Run,
            stopped: bool) -> dict[str, Any]:
    """One system's figures at one parallelism; ``stopped``: it ended as planned."""
    n = run.args.changes
    steady = asyncio.run(weir_phase.steady_rate(names.schema, [TABLE], n))
    status = "ok" if result.matches and stopped else \
        "partial" if result.rows < len(run.expected) or not stopped else "wrong"
    return {
        "status": status, "matches_model": result.matches,
        "changes_per_s": round(steady["events_per_s"]),
        "first_to_last_commit_s": steady["first_to_last_commit_s"],
        "wall_s": round(cost.wall_s, 2), "wall_changes_per_s": round(n / cost.wall_s),
        "cpu_s": round(cost.cpu_s, 2), "cpu_s_per_million": round(cost.cpu_s / n * 1e6, 1),
        "peak_rss_mb": round(cost.max_rss_mb, 1),
        "largest_process_rss_mb": round(cost.largest_rss_mb, 1),
        "processes": cost.processes, "exit_code": cost.exit_code,
        "rows": result.rows, "digest": result.digest, "missing_rows": result.missing,
        "extra_rows": result.extra, "differing_rows": result.differing,
    }


def measure_weir(run: Run, workers: int, side: Side | None) -> dict[str, Any]:
    """``weir run --until-caught-up --workers N`` into an empty mirror; its figures."""
    names = CdcNames.fresh("cw")
    run.names.append(names)
    config = weir_config(names, run.topic, run.args.partitions)
    cwd, env = (side.tree, side.env()) if side is not None else (None, weir_env())
    subprocess.run(weir("migrate", "-c", str(config)), cwd=cwd, env=env, check=True,
                   capture_output=True)
    log = weir_phase.work_file(f"{names.suffix}.weir.log")
    with run.phase(f"weir_{workers}"):
        cost = weir_phase.run_measured(
            weir("run", "-c", str(config), "--until-caught-up", "--workers", str(workers)),
            log, cwd=cwd, env=env)
    result = asyncio.run(changes.check(DSN, names.schema, run.expected))
    if cost.exit_code != 0:
        run.notes.append(f"Weir ({workers} workers) exited {cost.exit_code} (see "
                         f"benchmarks/results/tmp/{log.name})")
    return figures(names, cost, result, run, cost.exit_code == 0)


async def _table_moves(conn: asyncpg.Connection, schema: str) -> int:
    """Rows the table's inserts, updates and deletes touched so far, by the statistics
    (cheap, and about a second behind)."""
    moved: int = await conn.fetchval(
        "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
        "WHERE schemaname = $1 AND relname = $2", schema, TABLE)
    return moved


async def wait_for_model(schema: str, expected: list[Canonical],
                         measured: weir_phase.Measured, stall_s: float) -> Check | None:
    """Wait until ``schema``'s table equals the model; the last comparison, or None if
    none was made.

    The statistics say when the table has stopped changing; only then, and only if it holds
    as many rows as the model, is it read and compared, so the watching does not load
    PostgreSQL while the sink writes. Gives up when the worker exits or nothing changes for
    ``stall_s``.
    """
    conn = await asyncpg.connect(DSN)
    try:
        seen, moved_at, compared_at, last = -1, time.monotonic(), -1, None
        while measured.running() and time.monotonic() - moved_at < stall_s:
            moves = await _table_moves(conn, schema)
            if moves != seen:
                seen, moved_at = moves, time.monotonic()
            elif moves > 0 and moves != compared_at and await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.{TABLE}") == len(expected):
                compared_at = moves
                last = await changes.check(DSN, schema, expected)
                if last.matches:
                    return last
            await asyncio.sleep(0.5)
        return last
    finally:
        await conn.close()


def measure_jdbc(run: Run, tasks: int) -> dict[str, Any]:
    """The Debezium JDBC sink with ``tasks.max`` = ``tasks`` into an empty table; its
    figures once its table equals the model (or it stalls, or exits)."""
    names = CdcNames.fresh("cj")
    run.names.append(names)
    asyncio.run(execute(JDBC_TABLE.format(s=names.schema)))
    log = weir_phase.work_file(f"{names.suffix}.connect.log")
    # The worker's properties and its offsets file live and die with the phase.
    with tempfile.TemporaryDirectory(prefix="weir-bench-cdc-") as tmp:
        # One poll is one put(), written as one batch: as many records as Weir's batch.
        worker = connect_phase.worker_properties(Path(tmp), run.batch_rows)
        connector = connect_phase.render(
            HERE / "connector.properties.in", Path(tmp) / "connector.properties", {
                "NAME": names.group, "TASKS": str(tasks), "TOPICS": run.topic,
                "BATCH_SIZE": str(run.batch_rows), "SCHEMA": names.schema,
                **connect_phase.postgres_values()})
        with run.phase(f"jdbc_{tasks}"):
            measured = weir_phase.Measured(connect_phase.command(worker, connector), log)
            try:
                seen = asyncio.run(wait_for_model(names.schema, run.expected, measured,
                                                  run.args.stall_seconds))
            finally:
                cost = connect_phase.stop(measured)
    result = asyncio.run(changes.check(DSN, names.schema, run.expected))
    stopped = seen is not None and seen.matches and cost.exit_code in (0, connect_phase.STOPPED)
    if not stopped:
        run.notes.append(f"the JDBC sink (tasks.max={tasks}) did not reach the model: exit "
                         f"code {cost.exit_code} (see benchmarks/results/tmp/{log.name})")
    return figures(names, cost, result, run, stopped)


def ratios(weir_f: dict[str, Any], jdbc_f: dict[str, Any]) -> dict[str, float | None]:
    """Weir over the sink at one parallelism; None unless both tables equal the model."""
    if weir_f.get("status") != "ok" or jdbc_f.get("status") != "ok":
        return {"changes_per_s": None, "cpu_per_change": None, "peak_rss": None}

    def over(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None
    return {"changes_per_s": over(weir_f["changes_per_s"], jdbc_f["changes_per_s"]),
            # below 1: Weir spends less CPU per change than the sink
            "cpu_per_change": over(weir_f["cpu_s_per_million"], jdbc_f["cpu_s_per_million"]),
            "peak_rss": over(weir_f["peak_rss_mb"], jdbc_f["peak_rss_mb"])}


def markdown(results: dict[str, Any]) -> str:
    """The results as the table docs/performance.md quotes."""
    f, r = results["figures"], results["ratios"]
    mix = results["data"]["ops"]
    lines = [
        f"# CDC: {results['name']}", "",
        f"{results['changes']:,} Debezium change events ({mix.get('c', 0):,} creates, "
        f"{mix.get('u', 0):,} updates, {mix.get('d', 0):,} deletes, each delete followed by "
        f"its tombstone: {results['data']['records']:,} records, "
        f"{results['data']['value_bytes_per_change']:,} bytes per value) on "
        f"{results['settings']['partitions']} partitions; a model of {results['model_rows']:,} "
        f"rows. Weir at `{results['weir_sha']}`; {results['jdbc_sink']}.", "",
        "| system | parallelism | changes/s | CPU-s per million changes | peak RSS MB | "
        "table |", "|---|---:|---:|---:|---:|---|",
    ]
    for n in results["settings"]["workers"]:
        for system, label in (("weir", "Weir"), ("jdbc", "Debezium JDBC sink")):
            x = f[system].get(str(n))
            if x is None:
                continue
            table = "equals the model" if x["status"] == "ok" else \
                f"**{x['status']}**: {x['rows']:,} rows, {x['missing_rows']} missing, " \
                f"{x['extra_rows']} extra, {x['differing_rows']} differ"
            lines.append(f"| {label} | {n} | {x['changes_per_s']:,} | "
                         f"{x['cpu_s_per_million']} | {x['peak_rss_mb']} | {table} |")
    lines += ["", "| parallelism | Weir / sink, changes/s | Weir / sink, CPU per change | "
              "Weir / sink, peak RSS |", "|---:|---:|---:|---:|"]
    for n in results["settings"]["workers"]:
        x = r.get(str(n)) or {}

        def show(key: str, x: dict[str, Any] = x) -> str:
            return "not judged" if x.get(key) is None else f"{x[key]}"
        lines.append(f"| {n} | {show('changes_per_s')} | {show('cpu_per_change')} | "
                     f"{show('peak_rss')} |")
    if results["notes"]:
        lines += ["", *(f"- {note}" for note in results["notes"])]
    return "\n".join(lines) + "\n"


def measure(run: Run) -> dict[str, Any]:
    """Every phase; the figures by system and parallelism."""
    a = run.args
    workload = Workload(a.changes, a.seed)
    with run.phase("produce"):
        produced = asyncio.run(changes.produce(workload, run.topic, a.partitions))
    run.expected = workload.expected()
    data = {"ops": dict(workload.ops), **produced,
            "value_bytes_per_change": round(produced["value_bytes"] / max(a.changes, 1))}
    jdbc_missing = None if a.no_connect else connect_phase.missing()
    if jdbc_missing is not None:
        run.notes.append(f"the JDBC sink skipped: {jdbc_missing}")
    side, folder = None, None
    if a.weir_ref is not None:
        folder = Path(tempfile.mkdtemp(prefix="weir-bench-cdc-"))
        side = Side("weir", a.weir_ref, folder)
    out: dict[str, Any] = {"data": data, "weir": {}, "jdbc": {},
                           "weir_sha": side.sha if side is not None else git_sha()}
    try:
        for n in sorted(set(a.workers)):
            if not a.no_weir:
                out["weir"][str(n)] = measure_weir(run, n, side)
            if not a.no_connect and jdbc_missing is None:
                out["jdbc"][str(n)] = measure_jdbc(run, n)
    finally:
        if side is not None and folder is not None:
            side.remove()
            shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> int:
    args = parse()
    if not stack_answers():
        subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), "up"], check=True,
                       stdout=subprocess.DEVNULL)
    run = Run(args)
    start_load = loadavg()
    try:
        measured = measure(run)
    finally:
        asyncio.run(drop(run.names))
    name = report.result_name(datetime.now(UTC).strftime("%Y-%m-%d"),
                              f"cdc-{measured['weir_sha']}")
    v = connect_phase.versions()
    f = {"weir": measured["weir"], "jdbc": measured["jdbc"]}
    results: dict[str, Any] = {
        "name": name, "changes": args.changes, "seed": args.seed, "machine": machine(),
        "data": measured["data"], "model_rows": len(run.expected),
        "model_digest": changes.digest(run.expected), "weir_sha": measured["weir_sha"],
        "jdbc_sink": f"Kafka Connect {v['connect']} + Debezium JDBC sink {v['debezium']}",
        "jdbc_versions": v,
        "load_average": {"start": {"before": start_load}} | run.load,
        "settings": {"partitions": args.partitions, "workers": sorted(set(args.workers)),
                     "batch_max_rows": run.batch_rows,
                     "jdbc": {"batch.size": run.batch_rows,
                              "consumer.max.poll.records": run.batch_rows,
                              "use.reduction.buffer": True,
                              "insert.mode": "upsert", "primary.key.mode": "record_key",
                              "delete.enabled": True, "schema.evolution": "none"}},
        "figures": f, "notes": run.notes,
        "ratios": {n: ratios(f["weir"][n], f["jdbc"][n]) for n in f["weir"] if n in f["jdbc"]},
    }
    path = report.write_results(args.out, name, results)
    table = markdown(results)
    path.with_suffix(".md").write_text(table)
    print(table)
    print(f"[bench-cdc] results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
