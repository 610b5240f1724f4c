"""``make bench``: Weir against the machine's limits and two peers, same data, one run.

Phases, each on the same produced topics unless said otherwise: produce the data set with
``weir produce``; the consume ceiling (bare aiokafka, discard); the write ceiling (asyncpg
COPY + upsert of Weir's own rows, pre-built); Weir (``weir run --until-caught-up --workers
N`` into empty tables, once per ``--workers`` count, the best one reported); the peers: Quix
Streams' PostgreSQL sink (in its own virtualenv) and Kafka Connect with the Debezium JDBC
sink (on the JVM, reading the same events copied into schema-carrying envelopes); Avro
(the same events re-encoded as Avro through the schema registry, read by Weir with the best
worker count and by Quix Streams' own Avro deserializer); latency (a live ``weir run`` with
the best worker count on fresh topics, fed at 50 % of Weir's measured rate, then at 100
events/s). Every phase uses its own topics, group, schema and registry subjects, all deleted
at the end. Results go to ``benchmarks/results/<date>-<sha>.{json,md,png}``. See
docs/performance.md.

    .venv/bin/python -m benchmarks.run --events 200000     # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import uvloop

from benchmarks import avro_copy, ceilings, report, weir_phase
from benchmarks.connect import phase as connect_phase
from benchmarks.env import (
    BOOTSTRAP,
    DSN,
    REGISTRY,
    ROOT,
    Names,
    drop,
    execute,
    git_sha,
    loadavg,
    machine,
    weir,
    weir_env,
    write_config,
)
from processor.core.settings import Settings, load_settings

TABLES = ["orders", "page_views"]
QUIX_PYTHON = ROOT / "benchmarks" / ".venv" / "bin" / "python"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--write-sample", type=int, default=200_000,
                   help="events whose rows the write ceiling holds in memory and writes")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--slow-seconds", type=float, default=20.0)
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="Weir's worker counts to measure, the best reported (default: 1 and "
                        "the number of cores)")
    p.add_argument("--no-peer", action="store_true", help="skip Quix Streams")
    p.add_argument("--no-connect", action="store_true",
                   help="skip Kafka Connect + the Debezium JDBC sink")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--no-avro", action="store_true",
                   help="skip the Avro rows (Weir and Quix Streams on the same events in Avro)")
    p.add_argument("--no-mapped", action="store_true",
                   help="skip the mapped rows (the example as it ships: rich orders, their "
                        "mapped columns, then their line items as child rows too)")
    p.add_argument("--profile", action="store_true",
                   help="run Weir under py-spy (its CPU and RSS figures then include py-spy)")
    p.add_argument("--max-load", type=float, default=None,
                   help="wait (up to 10 min) until the 1-minute load is below this first")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args()


class Run:
    """One benchmark run: the phases, their figures and the load around each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.figures: dict[str, Any] = {}
        self.load: dict[str, dict[str, list[float]]] = {}
        self.names: list[Names] = []
        self.notes: list[str] = []

    def phase(self, name: str) -> _Phase:
        return _Phase(self, name)

    def config(self, tag: str, topics: dict[str, str] | None = None, fmt: str = "json",
               mapped: bool = False, children: bool = True, **overrides: Any
               ) -> tuple[Names, Path, Settings]:
        names = Names.fresh(tag)
        self.names.append(names)
        path = write_config(names, self.args.partitions, overrides or None, topics, fmt,
                            mapped, children)
        subprocess.run(weir("migrate", "-c", str(path)), env=weir_env(), check=True,
                       capture_output=True)
        return names, path, load_settings(path)


class _Phase:
    def __init__(self, run: Run, name: str) -> None:
        self.run, self.name = run, name

    def __enter__(self) -> None:
        print(f"[bench] {self.name} (load {loadavg()})", flush=True)
        self.run.load[self.name] = {"before": loadavg()}
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.run.load[self.name]["after"] = loadavg()
        seconds = round(time.perf_counter() - self.started, 1)
        self.run.load[self.name]["seconds"] = [seconds]
        print(f"[bench] {self.name} took {seconds}s", flush=True)


def wait_for_quiet(threshold: float, patience_s: float = 600) -> None:
    deadline = time.monotonic() + patience_s
    while loadavg()[0] > threshold and time.monotonic() < deadline:
        print(f"[bench] 1-minute load {loadavg()[0]} > {threshold}; waiting", flush=True)
        time.sleep(30)


def measure(run: Run) -> None:
    a = run.args
    names, config, settings = run.config("t")
    with run.phase("produce"):
        run.figures["produce"] = weir_phase.produce(config, a.events, None)
    # The rich events too, now: every Weir phase then starts after the same quiet phases,
    # none right after a producer (whose load would fall on it alone).
    rich = None if a.no_mapped else rich_data(run)
    avro = None if a.no_avro else avro_data(run, names)
    measure_ceilings(run, names, settings)
    rounds(run, names, config, settings)
    if avro is not None:
        if a.max_load is not None:
            wait_for_quiet(a.max_load)
        measure_weir_avro(run, *avro)
    if rich is not None:
        if a.max_load is not None:
            wait_for_quiet(a.max_load)
        measure_weir_mapped(run, *rich)
    if not a.no_peer and avro is not None:
        settle(run)
        peer(run, avro[0], "avro", run.figures.get("weir_avro_workers", 1))
    if not a.no_latency:
        latency(run)


def worker_counts(args: argparse.Namespace) -> list[int]:
    """``--workers``, or 1 and the number of cores."""
    return sorted(set(args.workers or [1, os.cpu_count() or 1]))


def measure_ceilings(run: Run, names: Names, settings: Settings) -> None:
    """The consume and write ceilings at each worker count's parallelism: N consumer
    processes in a group, N x lanes writing connections (:mod:`benchmarks.ceilings`)."""
    a = run.args
    topics = list(names.topics.values())
    by_workers: dict[str, dict[str, int]] = {}
    with run.phase("consume_ceiling"):
        rate, kept = asyncio.run(ceilings.consume(settings, topics, a.events, a.write_sample))
    by_workers["1"] = {"consume_events_per_s": round(rate)}
    for n in worker_counts(a):
        if n > 1:
            with run.phase(f"consume_ceiling_{n}"):
                rate, seen = ceilings.consume_parallel(settings, topics,
                                                       f"{names.group}-c{n}", n)
            by_workers[str(n)] = {"consume_events_per_s": round(rate), "consume_records": seen}
            if seen != a.events:  # a rebalance mid-read: the figure is not the ceiling's
                run.notes.append(f"the consume ceiling with {n} consumers read {seen:,} of "
                                 f"{a.events:,} records")
    rows = ceilings.build_rows(settings, kept)
    row_count = sum(map(len, rows.values()))
    for n in worker_counts(a):
        _, _, ceiling_settings = run.config("c")  # an empty schema each
        with run.phase(f"write_ceiling_{n}"):
            rows_per_s = asyncio.run(ceilings.write(ceiling_settings, rows, n))
        by_workers.setdefault(str(n), {}).update({
            "write_rows_per_s": round(rows_per_s),
            "write_events_per_s": round(rows_per_s * len(kept) / row_count),
            "write_connections": ceiling_settings.pipeline.lanes * n})
    run.figures["ceilings_by_workers"] = by_workers
    run.figures["write_ceiling_sample_events"] = len(kept)


SYSTEMS = ("weir", "quix", "connect")


def rounds(run: Run, source: Names, config: Path, settings: Settings) -> None:
    """Weir, Quix Streams and Kafka Connect at each parallelism N of ``--workers``: Weir
    with N workers, Quix with N instances in one group, Connect with ``tasks.max`` N. The
    order alternates from round to round (Weir first, then last), and each phase starts
    from a checkpointed server (:func:`settle`), so that none inherits another's debt.

    Weir's best count is its headline figure; every ratio is at equal parallelism
    (``matched``), and a system that wrote other rows than Weir at the same N is marked
    partial and not judged.
    """
    a = run.args
    by_workers: dict[str, dict[str, Any]] = {}
    matched: dict[str, dict[str, Any]] = {}
    envelopes: tuple[Names, dict[str, int]] | None = None
    for i, n in enumerate(worker_counts(a)):
        here = matched.setdefault(str(n), {})
        for system in SYSTEMS if i % 2 == 0 else SYSTEMS[::-1]:
            if (system == "quix" and a.no_peer) or (system == "connect" and a.no_connect):
                continue
            settle(run)
            if system == "weir":
                names, path = (source, config) if i == 0 else \
                    run.config("w", source.topics)[:2]
                by_workers[str(n)] = here["weir"] = weir_once(run, names, path, n,
                                                              f"weir_workers_{n}")
            elif system == "quix":
                here["quix"] = peer(run, source, "json", n)
            else:
                here["connect"], envelopes = connect(run, source, settings.batch.max_rows, n,
                                                     envelopes)
        mark_partial(run, n, here)
    best = max(by_workers, key=lambda n: by_workers[n]["events_per_s"])
    run.figures |= {f"weir_{k}": v for k, v in by_workers[best].items()}
    run.figures |= {"weir_workers": int(best), "weir_by_workers": by_workers,
                    "weir_profiled": bool(a.profile), "matched": matched,
                    "rounds_order": [list(SYSTEMS if i % 2 == 0 else SYSTEMS[::-1])
                                     for i in range(len(worker_counts(a)))]}
    # The headline rows compare with Weir's best at its own parallelism.
    ceiling = run.figures["ceilings_by_workers"][best]
    run.figures["consume_ceiling_events_per_s"] = ceiling.get("consume_events_per_s")
    run.figures["write_ceiling_events_per_s"] = ceiling.get("write_events_per_s")
    run.figures["write_ceiling_rows_per_s"] = ceiling.get("write_rows_per_s")
    for system, prefix in (("quix", "peer"), ("connect", "connect")):
        if system in matched[best]:
            run.figures |= {f"{prefix}_{k}": v for k, v in matched[best][system].items()}
    rows = {n: f["rows"] for n, f in by_workers.items()}
    if len(set(rows.values())) > 1:
        run.notes.append(f"Weir's rows differ by worker count: {rows}")


def mark_partial(run: Run, n: int, here: dict[str, Any]) -> None:
    """A peer that wrote other rows than Weir at the same parallelism is partial (Kafka
    Connect, which keeps every event, against the events it was given)."""
    weir_rows = (here.get("weir") or {}).get("rows")
    quix = here.get("quix")
    if quix is not None:
        quix["partial"] = weir_rows is None or quix["rows"] != weir_rows
        if quix["partial"]:
            run.notes.append(f"Quix Streams x{n} wrote {quix['rows']:,} rows, Weir "
                             f"{weir_rows}: partial, not judged")
    connect_ = here.get("connect")
    if connect_ is not None:
        connect_["partial"] = connect_["rows"] != connect_["expected_rows"]
        if connect_["partial"]:
            run.notes.append(f"Kafka Connect x{n} wrote {connect_['rows']:,} of "
                             f"{connect_['expected_rows']:,} rows: partial, not judged")


def settle(run: Run) -> None:
    """Before a measured phase: the server's dirty pages written out (a checkpoint), so no
    phase pays for the one before it; and, with ``--max-load``, a quiet machine."""
    asyncio.run(execute("CHECKPOINT"))
    if run.args.max_load is not None:
        wait_for_quiet(run.args.max_load)


def weir_once(run: Run, names: Names, path: Path, workers: int, key: str) -> dict[str, Any]:
    """``weir run -c path --until-caught-up --workers N`` as phase ``key``; its figures."""
    a = run.args
    with run.phase(key):
        profile = weir_phase.work_file(f"{names.suffix}.pyspy.txt") if a.profile else None
        cost = weir_phase.run_measured(
            weir("run", "-c", str(path), "--until-caught-up", "--workers", str(workers)),
            weir_phase.work_file(f"{names.suffix}.weir.log"), profile)
    steady = asyncio.run(weir_phase.steady_rate(names.schema, TABLES, a.events))
    return {
        "events_per_s": round(steady["events_per_s"]), "rows": steady["rows"],
        "wall_s": round(cost.wall_s, 2), "wall_events_per_s": round(a.events / cost.wall_s),
        "cpu_s": round(cost.cpu_s, 2),
        "cpu_s_per_million": round(cost.cpu_s / a.events * 1e6, 1),
        "peak_rss_mb": round(cost.max_rss_mb, 1), "processes": cost.processes,
        "largest_process_rss_mb": round(cost.largest_rss_mb, 1),
        "exit_code": cost.exit_code,
    }


def avro_data(run: Run, source: Names) -> tuple[Names, Path] | None:
    """The JSON data set's events again, as Avro on the phase's own topics (no clock).

    Same keys, partitions, order and timestamps (:mod:`benchmarks.avro_copy`); the schemas
    are registered under the topics' subjects. Returns the Avro topics' names and config.
    """
    if (why := avro_copy.registry_missing()) is not None:
        run.notes.append(f"Avro skipped: {why}")
        return None
    names, config, settings = run.config("a", fmt="avro")
    with run.phase("avro_copy"):
        copied = asyncio.run(avro_copy.copy(settings, source.topics, names.topics,
                                            run.args.partitions))
    events = max(copied["records"], 1)
    run.figures |= {"avro_copied_records": copied["records"],
                    "avro_json_bytes_per_event": round(copied["json_bytes"] / events),
                    "avro_bytes_per_event": round(copied["avro_bytes"] / events)}
    if copied["records"] != run.args.events:
        run.notes.append(f"the Avro copy holds {copied['records']} of {run.args.events} events")
    return names, config


def measure_weir_avro(run: Run, names: Names, config: Path) -> None:
    """Weir on the Avro topics, with the JSON run's best worker count, into empty tables.

    Its CPU per event against the JSON run's with the same worker count is the Avro ratio.
    """
    workers = run.figures["weir_workers"]
    figures = weir_once(run, names, config, workers, "weir_avro")
    run.figures |= {f"weir_avro_{k}": v for k, v in figures.items()}
    run.figures["weir_avro_workers"] = workers
    run.figures["weir_avro_cpu_vs_json"] = report.ratios(run.figures).get("avro_cpu_vs_json")
    # A registry that went away mid-run (a fault test elsewhere, a restart) stalls the
    # decode stage: such a run's figures include the wait, which the results say.
    log = weir_phase.work_file(f"{names.suffix}.weir.log").read_text(errors="replace")
    stalls = sum('"part":"schema registry"' in line for line in log.splitlines())
    run.figures["weir_avro_registry_stalls"] = stalls
    if stalls:
        run.notes.append(f"the schema registry did not answer Weir's Avro run {stalls} "
                         f"time(s): its figures include the stall (see "
                         f"benchmarks/results/tmp/{names.suffix}.weir.log)")
    if figures["rows"] != run.figures["weir_rows"]:
        run.notes.append(f"Weir wrote {figures['rows']} rows from Avro, "
                         f"{run.figures['weir_rows']} from JSON")


def rich_data(run: Run) -> tuple[Names, Path]:
    """As many rich sample events (orders with what the example maps) on topics of their
    own, and the config of the example's mapped columns on them (without child tables)."""
    names, config, _ = run.config("m", mapped=True, children=False)
    with run.phase("produce_rich"):
        run.figures["produce_rich"] = weir_phase.produce(config, run.args.events, None,
                                                         rich=True)
    return names, config


def measure_weir_mapped(run: Run, names: Names, config: Path) -> None:
    """Weir on the example as it ships, with the JSON run's best worker count, on the rich
    events: read twice into empty tables, once with the orders' mapped columns only (the
    mapped row: its CPU per event against the plain example's is the mapped ratio, target
    <= 1.3) and once with their line items as child rows too (about two more rows per
    order, reported beside it; docs/analysts.md)."""
    workers = run.figures["weir_workers"]
    figures = weir_once(run, names, config, workers, "weir_mapped")
    run.figures |= {f"weir_mapped_{k}": v for k, v in figures.items()}
    run.figures["weir_mapped_workers"] = workers
    # Its rows differ a little from the plain run's: other draws, other bots dropped.
    both, both_config, _ = run.config("mi", names.topics, mapped=True)
    figures = weir_once(run, both, both_config, workers, "weir_children")
    run.figures |= {f"weir_children_{k}": v for k, v in figures.items()}
    run.figures["weir_children_child_rows"] = asyncio.run(_count(both.schema, "order_items"))


async def _count(schema: str, table: str) -> int:
    conn = await asyncpg.connect(DSN)
    try:
        count: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"')
        return count
    finally:
        await conn.close()


def peer(run: Run, source: Names, fmt: str = "json", instances: int = 1
         ) -> dict[str, Any] | None:
    """Quix Streams on ``source``'s topics in ``fmt``, as ``instances`` processes in one
    consumer group (its way to use N cores); its figures. The Avro run's go to
    ``peer_avro_*`` and are checked against Weir's Avro rows (``partial`` if not the same);
    the JSON rounds' are checked by :func:`mark_partial`.
    """
    if not QUIX_PYTHON.exists():
        run.notes.append("peer skipped: benchmarks/.venv is missing (make bench creates it)")
        return None
    prefix = f"peer_{fmt}" if fmt != "json" else f"peer_{instances}"
    names = Names.fresh("q")
    run.names.append(names)
    asyncio.run(_quix_tables(names.schema))
    version = subprocess.run(
        [str(QUIX_PYTHON), "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True, text=True, check=True).stdout.strip()
    one = shlex.join([str(QUIX_PYTHON), str(ROOT / "benchmarks" / "peer_quix.py"), "--group",
                      names.group, "--schema", names.schema, "--format", fmt, "--registry",
                      REGISTRY, *[f"--topic={et}={t}" for et, t in source.topics.items()]])
    # N instances under one shell, which waits for them: wait4 then counts all their CPU.
    cmd = ["sh", "-c", " & ".join([one] * instances) + " & wait"]
    with run.phase(prefix):
        cost = weir_phase.run_measured(cmd, weir_phase.work_file(f"{names.suffix}.quix.log"))
    steady = asyncio.run(weir_phase.steady_rate(names.schema, TABLES, run.args.events))
    figures = {
        "name": "quixstreams PostgreSQLSink" + ("" if fmt == "json" else
                                                f", {fmt} via its Schema Registry client"),
        "version": version, "instances": instances,
        "events_per_s": round(steady["events_per_s"]), "rows": steady["rows"],
        "cpu_s_per_million": round(cost.cpu_s / run.args.events * 1e6, 1),
        "peak_rss_mb": round(cost.max_rss_mb, 1), "exit_code": cost.exit_code,
    }
    if cost.exit_code != 0:
        run.notes.append(f"Quix Streams ({fmt}, x{instances}) exited {cost.exit_code} (see "
                         f"benchmarks/results/tmp/{names.suffix}.quix.log)")
    if fmt != "json":
        expected = run.figures.get(f"weir_{fmt}_rows")
        figures["partial"] = expected is not None and steady["rows"] != expected
        if figures["partial"]:
            run.notes.append(f"Quix Streams ({fmt}) wrote {steady['rows']} rows, Weir "
                             f"{expected} (partial: not judged)")
        run.figures |= {prefix: figures["name"]} | {
            f"{prefix}_{k}": v for k, v in figures.items() if k != "name"}
    return figures


def connect(run: Run, source: Names, batch_size: int, tasks: int,
            envelopes: tuple[Names, dict[str, int]] | None
            ) -> tuple[dict[str, Any] | None, tuple[Names, dict[str, int]] | None]:
    """Kafka Connect + the Debezium JDBC sink (benchmarks/connect), tuned as a user would,
    with ``tasks.max`` ``tasks``; its figures, and the envelope topics (copied from
    ``source`` before the clock, once: every round reads the same)."""
    if (why := connect_phase.missing()) is not None:
        run.notes.append(f"Kafka Connect skipped: {why}")
        return None, envelopes
    names = Names.fresh("k")
    run.names.append(names)
    if envelopes is None:
        with run.phase("connect_envelopes"):
            envelopes = (names, connect_phase.prepare(source, names, run.args.partitions))
    else:
        asyncio.run(connect_phase.make_tables(names.schema))
    with run.phase(f"connect_{tasks}"):
        figures = connect_phase.measure(names, run.args.events, envelopes[1], batch_size,
                                        tasks, envelopes[0].topics)
    if figures["exit_code"] not in (0, connect_phase.STOPPED):
        run.notes.append(f"Kafka Connect exited {figures['exit_code']} (see "
                         f"benchmarks/results/tmp/{names.suffix}.connect.log)")
    return figures, envelopes


async def _quix_tables(schema: str) -> None:
    """Quix's own table shape, made ahead to add ``ingested_at`` (for its rate).

    The primary key gets a name unique in the database: the sink looks its key columns up
    by constraint name alone (not schema), so a second ``orders_pkey`` anywhere in the
    database (every Weir test schema has one) makes it refuse to write.
    """
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        for table in TABLES:
            await conn.execute(
                f'CREATE TABLE {schema}.{table} ("timestamp" timestamp NOT NULL, __key text, '
                "event_id text, ingested_at timestamptz NOT NULL DEFAULT now(), "
                f"CONSTRAINT {schema}_{table}_pk PRIMARY KEY (event_id))")
    finally:
        await conn.close()


def latency(run: Run) -> None:
    names, config, settings = run.config("l")
    asyncio.run(weir_phase.install_commit_clock(names.schema))
    asyncio.run(weir_phase.broker_timestamps(settings))
    proc = weir_phase.start_weir(config, weir_phase.work_file(f"{names.suffix}.weir.log"),
                                 run.figures["weir_workers"])
    try:
        # Warm-up: the group has joined once these are written. Each produce gets its own
        # seed: the same seed makes the same event ids, which the table would skip.
        produced = weir_phase.produce(config, 200, None, seed=1)["events"]
        asyncio.run(_written(names, produced))
        half = max(100.0, run.figures["weir_events_per_s"] / 2)
        phases = (("latency_half_load", half, run.args.latency_seconds, 2),
                  ("latency_100_per_s", 100.0, run.args.slow_seconds, 3))
        for key, rate, seconds, seed in phases:
            with run.phase(key):
                since = int(time.time() * 1000)
                sent = weir_phase.produce(config, max(1, round(rate * seconds)), rate, seed)
                produced += sent["events"]
                asyncio.run(_written(names, produced))
            lat = asyncio.run(weir_phase.latencies(names.schema, TABLES, since))
            run.figures[key] = {**lat, "target_per_s": round(rate),
                                "offered_per_s": sent["events_per_s"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    run.figures["linger_ms"] = settings.batch.linger_ms


async def _written(names: Names, events: int, patience_s: float = 300) -> None:
    """Wait until the stored watermarks cover ``events`` (filtered events included)."""
    conn = await asyncpg.connect(DSN)
    try:
        deadline = time.monotonic() + patience_s
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                f"SELECT coalesce(sum(m), 0) FROM (SELECT max(next_offset) AS m FROM "
                f"{names.schema}.weir_offsets GROUP BY topic, partition) s")
            if done >= events:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{events} events not written within {patience_s}s")
    finally:
        await conn.close()


def stack_answers() -> bool:
    """True when Kafka and PostgreSQL already listen (a stack started elsewhere is used)."""
    for address in (BOOTSTRAP, DSN.rsplit("@", 1)[1].split("/", 1)[0]):
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return False
    return True


def main() -> int:
    args = parse()
    uvloop.install()
    if not stack_answers():
        subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), "up"], check=True,
                       stdout=subprocess.DEVNULL)
    run = Run(args)
    start_load = loadavg()
    # The code measured is the code at the start: a commit made while the run goes on
    # must not name its results.
    name = report.result_name(datetime.now(UTC).strftime("%Y-%m-%d"), git_sha())
    try:
        measure(run)
    finally:
        asyncio.run(drop(run.names))
    example = load_settings(ROOT / "config" / "example.yaml")
    results: dict[str, Any] = {
        "name": name, "events": args.events, "machine": machine(),
        "load_average": {"start": {"before": start_load}} | run.load,
        "settings": {"partitions": args.partitions, "lanes": example.pipeline.lanes,
                     "pool_size": example.postgres.pool_size,
                     "batch": example.batch.model_dump(),
                     "fetch_max_records": example.kafka.fetch_max_records,
                     "write_sample": args.write_sample, "workers": worker_counts(args),
                     "avro": not args.no_avro},
        "figures": run.figures, "notes": run.notes,
        "ratios": report.ratios(run.figures),
        "targets": report.targets(run.figures, float(run.figures.get("linger_ms", 100))),
    }
    path = report.write_results(args.out, name, results)
    table = report.markdown(results)
    path.with_suffix(".md").write_text(table)
    report.chart(results, path.with_suffix(".png"))
    print(table)
    print(f"[bench] results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
