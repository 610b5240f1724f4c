"""Where an event's latency goes, stage by stage, in a live pipeline fed at a fixed rate.

Runs Weir's own ``Pipeline`` in this process on fresh topics and tables, fed by ``weir
produce --rate`` in a child process, and stamps every fetch, decode, batch cut and batch
transaction with the wall clock (the Kafka timestamp's clock) by wrapping a few methods of
Weir's classes: Weir's code is not changed. Every event then gets its latency to the
client's return from COMMIT, split into stages; the figures are the mean of each stage over
the events around the median and over the slowest 1 % (the p99 tail). Beside it: a loop-lag
probe (how late a 5 ms sleep wakes), the garbage collector's pauses, and PostgreSQL's wait
events of Weir's connections sampled every 20 ms.

    .venv/bin/python -m benchmarks.latency_stages --rate 19000 --seconds 30

Writes ``benchmarks/results/latency-stages-<date>-<sha>[-<label>].{json,md}``. Figures
only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import uvloop

from benchmarks import weir_phase
from benchmarks.env import (
    BOOTSTRAP,
    DSN,
    ROOT,
    Names,
    drop,
    git_sha,
    loadavg,
    weir,
    weir_env,
    write_config,
)
from processor.batch.buffer import LaneBuffer
from processor.contracts import load_contracts
from processor.core import logs
from processor.core.offsets import OffsetStore
from processor.core.progress import PartitionProgress
from processor.core.records import Block, DeadLetter
from processor.core.settings import load_settings
from processor.decode.stage import DecodeStage
from processor.runtime.app import Pipeline
from processor.sink.writer import BatchWriter
from processor.source.consumer import KafkaSource
from processor.transform.loader import load_chains

TABLES = ["orders", "page_views"]


def now_ms() -> float:
    return time.time() * 1000


@dataclass
class Fetch:
    called: float
    returned: float
    records: int
    dispatch_start: float = 0.0
    decoded: float = 0.0  # the first lane put of its dispatch: every record is decoded
    dispatched: float = 0.0


@dataclass
class Batch:
    lane: int
    rows: int
    cut: float
    oldest_put: float
    write_start: float = 0.0
    first_statement: float = 0.0  # pool acquired, BEGIN sent: the first COPY starts
    statements: list[tuple[str, float, float]] = field(default_factory=list)
    offsets: tuple[float, float] = (0.0, 0.0)
    committed: float = 0.0
    attempts: int = 0


class Stamps:
    """Everything stamped during one run, in ms of the wall clock."""

    def __init__(self) -> None:
        self.fetches: list[Fetch] = []
        self.batches: list[Batch] = []
        self.chunk_fetch: dict[Any, int] = {}
        self.event_ts = array("d")  # per committed event: Kafka timestamp
        self.event_fetch = array("l")  # … the fetch that brought it
        self.event_batch = array("l")  # … the batch that committed it
        self.loop_lag: list[float] = []
        self.gc_pauses: list[tuple[int, float]] = []
        self.waits: Counter[str] = Counter()
        self.wait_samples = 0
        self.current_fetch: int | None = None
        self.by_task: dict[Any, Batch] = {}
        self.fetch_of: dict[int, int] = {}  # id of a fetched list → its Fetch


def instrument(stamps: Stamps) -> None:
    """Wrap the methods whose entry and exit are the stage boundaries."""
    _source(stamps)
    _lanes(stamps)
    _statements(stamps)
    _collector(stamps)


def _source(stamps: Stamps) -> None:
    fetch = KafkaSource.fetch

    async def fetch_w(self: KafkaSource) -> Any:
        called = now_ms()
        out = await fetch(self)
        if out:
            stamps.fetches.append(Fetch(called, now_ms(), sum(len(r) for _, r in out)))
            stamps.fetch_of[id(out)] = len(stamps.fetches) - 1
        return out

    dispatch = DecodeStage.dispatch

    async def dispatch_w(self: DecodeStage, fetched: list[Any]) -> None:
        index = stamps.fetch_of.pop(id(fetched), None)
        if index is not None:
            stamps.fetches[index].dispatch_start = now_ms()
        stamps.current_fetch = index
        try:
            await dispatch(self, fetched)
        finally:
            if index is not None:
                f = stamps.fetches[index]
                f.dispatched = now_ms()
                f.decoded = f.decoded or f.dispatched
            stamps.current_fetch = None

    open_chunk = PartitionProgress.open_chunk

    def open_chunk_w(self: PartitionProgress, *args: Any, **kwargs: Any) -> Any:
        chunk = open_chunk(self, *args, **kwargs)
        if stamps.current_fetch is not None:
            stamps.chunk_fetch[chunk] = stamps.current_fetch
        return chunk

    KafkaSource.fetch = fetch_w  # type: ignore[method-assign]
    DecodeStage.dispatch = dispatch_w  # type: ignore[method-assign]
    PartitionProgress.open_chunk = open_chunk_w  # type: ignore[method-assign]


def _lanes(stamps: Stamps) -> None:
    put = LaneBuffer.put
    oldest_put: dict[int, float] = {}

    async def put_w(self: LaneBuffer, items: list[Any], nbytes: int,
                    rows: int | None = None) -> None:
        if stamps.current_fetch is not None:
            f = stamps.fetches[stamps.current_fetch]
            f.decoded = f.decoded or now_ms()
        empty = not self.rows
        await put(self, items, nbytes, rows)
        if empty:
            oldest_put[id(self)] = now_ms()

    take = LaneBuffer.take

    async def take_w(self: LaneBuffer, max_rows: int, max_bytes: int, linger_s: float) -> Any:
        batch = await take(self, max_rows, max_bytes, linger_s)
        if batch:
            # Items left over keep the older arrival, as the buffer's own linger does.
            stamps.by_task[asyncio.current_task()] = Batch(
                -1, len(batch), now_ms(), oldest_put.get(id(self), 0.0))
            if self.rows:
                oldest_put[id(self)] = now_ms()
        return batch

    write = BatchWriter.write

    async def write_w(self: BatchWriter, writer: int, items: Any, marks: Any) -> None:
        task = asyncio.current_task()
        b = stamps.by_task.get(task)
        if b is None:  # a bisected part: not stamped
            await write(self, writer, items, marks)
            return
        b.lane, b.attempts = writer, b.attempts + 1
        b.write_start, b.statements, b.first_statement = now_ms(), [], 0.0
        await write(self, writer, items, marks)
        b.committed = now_ms()
        del stamps.by_task[task]
        index = len(stamps.batches)
        stamps.batches.append(b)
        for item in items:
            f = stamps.chunk_fetch.get(item.chunk)
            if f is None or isinstance(item, DeadLetter):
                continue
            # A block of the columnar path stands for many events, each with its time.
            times = item.timestamps_ms if isinstance(item, Block) else [item.timestamp_ms]
            stamps.event_ts.extend(times)
            stamps.event_fetch.extend([f] * len(times))
            stamps.event_batch.extend([index] * len(times))

    LaneBuffer.put = put_w  # type: ignore[method-assign]
    LaneBuffer.take = take_w  # type: ignore[method-assign]
    BatchWriter.write = write_w  # type: ignore[method-assign]


def _statements(stamps: Stamps) -> None:
    save = OffsetStore.save

    async def save_w(self: OffsetStore, conn: Any, writer: int, marks: Any) -> None:
        start = now_ms()
        await save(self, conn, writer, marks)
        b = stamps.by_task.get(asyncio.current_task())
        if b is not None:
            b.offsets = (start, now_ms())

    copy = asyncpg.Connection.copy_records_to_table
    execute = asyncpg.Connection.execute

    async def copy_w(self: Any, table: str, **kwargs: Any) -> Any:
        return await _timed(f"copy {table.removeprefix('weir_stage_')}",
                            copy(self, table, **kwargs))

    async def execute_w(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        name = "insert " + ("orders+rollup" if "per_minute" in query else
                            query.split(" (", 1)[0].rsplit(".", 1)[-1].strip('"'))
        if not query.startswith(("INSERT INTO", "WITH")) or "weir_offsets" in query:
            return await execute(self, query, *args, **kwargs)
        return await _timed(name, execute(self, query, *args, **kwargs))

    async def _timed(name: str, work: Any) -> Any:
        b = stamps.by_task.get(asyncio.current_task())
        start = now_ms()
        out = await work
        if b is not None:
            b.first_statement = b.first_statement or start
            b.statements.append((name, start, now_ms()))
        return out

    OffsetStore.save = save_w  # type: ignore[method-assign]
    asyncpg.Connection.copy_records_to_table = copy_w  # type: ignore[method-assign,assignment]
    asyncpg.Connection.execute = execute_w  # type: ignore[method-assign]


def _collector(stamps: Stamps) -> None:
    started: dict[int, float] = {}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif 0 in started:
            stamps.gc_pauses.append((info["generation"],
                                     (time.perf_counter() - started.pop(0)) * 1000))

    gc.callbacks.append(on_gc)


async def loop_lag(stamps: Stamps, stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.005)
        stamps.loop_lag.append((time.perf_counter() - t) * 1000 - 5)


async def pg_waits(stamps: Stamps, stop: asyncio.Event) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE application_name = 'weir' AND pid <> pg_backend_pid()")
            stamps.wait_samples += 1
            for r in rows:
                if r["state"] == "active":
                    stamps.waits[f"{r['wait_event_type'] or 'CPU'}:{r['wait_event'] or '-'}"] += 1
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def written(schema: str, events: int, patience_s: float = 300) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        deadline = time.monotonic() + patience_s
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                f"SELECT coalesce(sum(m), 0) FROM (SELECT max(next_offset) AS m FROM "
                f"{schema}.weir_offsets GROUP BY topic, partition) s")
            if done >= events:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{events} events not written within {patience_s}s")
    finally:
        await conn.close()


async def probe(topics: list[str], partitions: int, seconds: float) -> None:
    """A bare consumer beside Weir, in a process of its own: receive time minus the Kafka
    timestamp, what the producer and the broker add before any consumer can see a record."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        seen: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = now_ms()
                seen.extend(now - r.timestamp for r in records)
    finally:
        await consumer.stop()
    print(json.dumps({"records": len(seen), **{f"p{round(q * 100)}": round(pct(seen, q), 1)
                                               for q in (0.5, 0.95, 0.99)}}))


async def start_probe(names: Names, partitions: int,
                      seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.latency_stages", "--probe", str(seconds),
        str(partitions), *names.topics.values(), env=weir_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)


async def probe_result(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, _ = await proc.communicate()
    try:
        return dict(json.loads(out.decode().strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {}


async def produce(config: Path, count: int, rate: float, seed: int) -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *weir("produce", "-c", str(config), "--count", str(count), "--seed", str(seed),
              "--no-progress", "--rate", str(rate)),
        env=weir_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"weir produce failed: {err.decode()}")
    return count / (time.perf_counter() - started)


WARM_UP = 200  # events written before the clock starts: the group has joined by then


async def warm_up(names: Names, config: Path) -> None:
    """Feed a few events and wait until they are written."""
    await produce(config, WARM_UP, 1000, seed=1)
    await written(names.schema, WARM_UP)


async def feed(args: argparse.Namespace, names: Names,
               config: Path) -> tuple[float, dict[str, Any]]:
    """The measured feed, with a bare consumer beside Weir: the rate offered and what that
    consumer saw. Returns once every fed event is written."""
    count = round(args.rate * args.seconds)
    bare = await start_probe(names, args.partitions, args.seconds * 1.5 + 5)
    offered = await produce(config, count, args.rate, seed=2)
    await written(names.schema, WARM_UP + count)
    return offered, await probe_result(bare)


async def session(args: argparse.Namespace, names: Names, config: Path,
                  stamps: Stamps) -> dict[str, Any]:
    settings = load_settings(config)
    logs.configure(settings.logging.level, settings.logging.format,
                   settings.logging.repeat_window_s)
    pipeline = Pipeline(settings, load_contracts(settings), load_chains(settings))
    await weir_phase.install_commit_clock(names.schema)
    running = asyncio.create_task(pipeline.run())
    stop = asyncio.Event()
    probes = [asyncio.create_task(loop_lag(stamps, stop)),
              asyncio.create_task(pg_waits(stamps, stop))]
    try:
        await warm_up(names, config)
        since = now_ms()
        first_event = len(stamps.event_ts)
        lag_from, gc_from = len(stamps.loop_lag), len(stamps.gc_pauses)
        stamps.waits.clear()
        stamps.wait_samples = 0
        offered, before_weir = await feed(args, names, config)
    finally:
        stop.set()
        pipeline.request_stop("measured")
        code = await running
        await asyncio.gather(*probes)
    stamps.loop_lag = stamps.loop_lag[lag_from:]
    stamps.gc_pauses = stamps.gc_pauses[gc_from:]
    bench = await weir_phase.latencies(names.schema, TABLES, int(since))
    return {"offered_per_s": round(offered), "exit_code": code, "since_ms": since,
            "first_event": first_event, "commit_clock_latency_ms": bench,
            "bare_consumer_ms": before_weir}


async def plain(args: argparse.Namespace, names: Names, config: Path) -> dict[str, Any]:
    """The same feed into ``weir run`` as its own process, uninstrumented (as ``make bench``)."""
    await weir_phase.install_commit_clock(names.schema)
    proc = await asyncio.create_subprocess_exec(
        *weir("run", "-c", str(config)), env=weir_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await warm_up(names, config)
        since = now_ms()
        offered, before_weir = await feed(args, names, config)
    finally:
        proc.terminate()
        code = await proc.wait()
    bench = await weir_phase.latencies(names.schema, TABLES, int(since))
    return {"offered_per_s": round(offered), "exit_code": code,
            "commit_clock_latency_ms": bench, "bare_consumer_ms": before_weir}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


STAGES = ("kafka → fetch returned", "fetch queue (waiting for decode)", "decoding its fetch",
          "lane buffer → batch cut", "cut → write", "write → first COPY (partitions, pool)",
          "statements (COPY, INSERT, rollup)", "offsets upsert", "COMMIT")


def breakdown(stamps: Stamps, first_event: int, since: float) -> dict[str, Any]:
    per_event: list[tuple[float, tuple[float, ...]]] = []
    for i in range(first_event, len(stamps.event_ts)):
        ts = stamps.event_ts[i]
        if ts < since:
            continue
        f = stamps.fetches[stamps.event_fetch[i]]
        b = stamps.batches[stamps.event_batch[i]]
        last_statement = max([b.offsets[1], *(end for _, _, end in b.statements)])
        txn_start = b.first_statement or b.write_start
        offsets = b.offsets[1] - b.offsets[0]
        parts = (f.returned - ts, f.dispatch_start - f.returned, f.decoded - f.dispatch_start,
                 b.cut - f.decoded, b.write_start - b.cut,
                 (b.first_statement or b.write_start) - b.write_start,
                 last_statement - txn_start - offsets, offsets, b.committed - last_statement)
        per_event.append((b.committed - ts, parts))
    per_event.sort(key=lambda e: e[0])
    n = len(per_event)
    totals = [t for t, _ in per_event]

    def band(lo: float, hi: float) -> dict[str, float]:
        chosen = per_event[int(lo * n):max(int(hi * n), int(lo * n) + 1)]
        return {"events": len(chosen), "total": round(statistics.fmean(t for t, _ in chosen), 1),
                **{s: round(statistics.fmean(p[k] for _, p in chosen), 1)
                   for k, s in enumerate(STAGES)}}

    return {"events": n, "p50": round(pct(totals, 0.5), 1), "p95": round(pct(totals, 0.95), 1),
            "p99": round(pct(totals, 0.99), 1), "max": round(totals[-1], 1) if n else None,
            "median_band": band(0.45, 0.55), "p99_tail": band(0.99, 1.0)}


def batch_figures(stamps: Stamps, since: float) -> dict[str, Any]:
    batches = [b for b in stamps.batches if b.cut >= since]
    by_name: defaultdict[str, list[float]] = defaultdict(list)
    for b in batches:
        for name, start, end in b.statements:
            by_name[name].append(end - start)
    txn = [b.committed - (b.first_statement or b.write_start) for b in batches]
    waited = [b.cut - b.oldest_put for b in batches if b.oldest_put]
    return {
        "batches": len(batches),
        "rows_per_batch_mean": round(statistics.fmean(b.rows for b in batches), 1),
        "transaction_ms": {"p50": round(pct(txn, 0.5), 1), "p99": round(pct(txn, 0.99), 1),
                           "max": round(max(txn), 1)},
        "oldest_item_wait_before_cut_ms": {"p50": round(pct(waited, 0.5), 1),
                                           "p99": round(pct(waited, 0.99), 1)},
        "statement_ms": {k: {"p50": round(pct(v, 0.5), 1), "p99": round(pct(v, 0.99), 1),
                             "max": round(max(v), 1)} for k, v in sorted(by_name.items())},
        "offsets_ms": _spread([b.offsets[1] - b.offsets[0] for b in batches]),
        "commit_ms": _spread([b.committed - max([b.offsets[1], *(e for _, _, e in b.statements)])
                              for b in batches]),
        "retried_batches": sum(1 for b in batches if b.attempts > 1),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 0.5), 1), "p99": round(pct(values, 0.99), 1),
            "max": round(max(values), 1) if values else 0.0}


def fetch_figures(stamps: Stamps, since: float) -> dict[str, Any]:
    fetches = [f for f in stamps.fetches if f.called >= since]
    return {"fetches": len(fetches),
            "records_per_fetch": _spread([float(f.records) for f in fetches]),
            "getmany_wait_ms": _spread([f.returned - f.called for f in fetches]),
            "decode_ms": _spread([f.decoded - f.dispatch_start for f in fetches]),
            "queue_wait_ms": _spread([f.dispatch_start - f.returned for f in fetches])}


def markdown(result: dict[str, Any]) -> str:
    b = result["breakdown"]
    lines = [f"# Latency by stage: {result['name']}", "",
             f"{result['offered_per_s']} events/s offered for {result['seconds']} s, "
             f"{b['events']} events timed to the client's return from COMMIT: p50 {b['p50']}, "
             f"p95 {b['p95']}, p99 {b['p99']}, max {b['max']} ms (commit clock, as `make "
             f"bench` measures: p99 {result['commit_clock_latency_ms']['p99']} ms). "
             f"A bare consumer beside it received them after {result['bare_consumer_ms']} ms. "
             f"1-minute load {result['load']}.", "",
             "| stage (mean ms) | events around the median | slowest 1 % |", "|---|---:|---:|"]
    lines += [f"| {s} | {b['median_band'][s]} | {b['p99_tail'][s]} |" for s in ("total", *STAGES)]
    lines += ["", "```", json.dumps({k: result[k] for k in ("batches", "fetches", "loop",
                                                             "gc", "pg_waits")}, indent=1),
              "```", ""]
    return "\n".join(lines)


def summarize(args: argparse.Namespace, names: Names, stamps: Stamps,
              run: dict[str, Any], load: list[float]) -> dict[str, Any]:
    since = run["since_ms"]
    lag = stamps.loop_lag
    label = f"-{args.label}" if args.label else ""
    name = f"latency-stages-{datetime.now(UTC).strftime('%Y-%m-%d')}-{git_sha()}{label}"
    waits = stamps.waits.most_common(12)
    return {
        "name": name, "rate": args.rate, "seconds": args.seconds, "load": load,
        "offered_per_s": run["offered_per_s"], "exit_code": run["exit_code"],
        "commit_clock_latency_ms": run["commit_clock_latency_ms"],
        "bare_consumer_ms": run["bare_consumer_ms"],
        "breakdown": breakdown(stamps, run["first_event"], since),
        "batches": batch_figures(stamps, since), "fetches": fetch_figures(stamps, since),
        "loop": {"lag_p50_ms": round(pct(lag, 0.5), 2), "lag_p99_ms": round(pct(lag, 0.99), 1),
                 "lag_max_ms": round(max(lag), 1) if lag else 0.0,
                 "lag_over_20ms": sum(1 for x in lag if x > 20)},
        "gc": {f"gen{g}": {"pauses": len(ps), "total_ms": round(sum(ps), 1),
                           "max_ms": round(max(ps, default=0.0), 1)}
               for g in (0, 1, 2)
               for ps in [[p for gen, p in stamps.gc_pauses if gen == g]]}
              | {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()},
        "pg_waits": {"samples": stamps.wait_samples,
                     "active_backends_per_sample": {k: round(v / max(stamps.wait_samples, 1), 3)
                                                    for k, v in waits}},
        "partitions": args.partitions, "suffix": names.suffix,
    }


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=19000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--label", default="", help="added to the results file's name")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="a config override, e.g. batch.linger_ms=50 (YAML value)")
    p.add_argument("--gc", choices=("tuned", "default"), default="tuned",
                   help="the collector as `weir run` tunes it (processor/runtime/gc_tuning.py), or "
                        "CPython's default")
    p.add_argument("--gc-threshold", default="",
                   help="with --gc default: gc.set_threshold instead, e.g. 10000,20,20")
    p.add_argument("--plain", action="store_true",
                   help="run `weir run` as its own process, uninstrumented: latency only")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args()


def overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    import yaml

    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for pair in pairs:
        key, value = pair.split("=", 1)
        section, name = key.split(".", 1)
        out[section][name] = yaml.safe_load(value)
    return dict(out)


def main() -> int:
    if sys.argv[1:2] == ["--probe"]:
        uvloop.run(probe(sys.argv[4:], int(sys.argv[3]), float(sys.argv[2])))
        return 0
    args = parse()
    names = Names.fresh("s")
    config = write_config(names, args.partitions, overrides(args.set) or None)
    import subprocess

    subprocess.run(weir("migrate", "-c", str(config)), env=weir_env(), check=True,
                   capture_output=True)
    stamps = Stamps()
    load = loadavg()
    try:
        if args.plain:
            run = uvloop.run(plain(args, names, config))
        else:
            instrument(stamps)
            if args.gc == "tuned":
                from processor.runtime import gc_tuning

                gc_tuning.tune()  # as `weir run` does
            elif args.gc_threshold:
                gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
            run = uvloop.run(session(args, names, config, stamps))
    finally:
        asyncio.run(drop([names]))
    if args.plain:
        label = f"-{args.label}" if args.label else ""
        result = {"name": f"latency-plain-{datetime.now(UTC).strftime('%Y-%m-%d')}-"
                  f"{git_sha()}{label}", "rate": args.rate, "seconds": args.seconds,
                  "load": load, "load_after": loadavg(), "settings": args.set, **run}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{result['name']}.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        return 0
    result = summarize(args, names, stamps, run, load)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{result['name']}.json"
    path.write_text(json.dumps(result, indent=1))
    path.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
