"""Two versions of Weir, alternately, on one backlog: CPU per million events and peak RSS.

Whole runs on a shared machine move with its load by a third between minutes, so two
versions are compared in the same minutes, on the same data: both refs are checked out
into temporary git worktrees, one backlog of ``--events`` sample events is produced once,
and ``weir run --until-caught-up`` of each version runs ``--pairs`` times, alternately
(base, head, then head, base, ...: drift in the load falls on both sides alike). Every run
gets a fresh consumer group and PostgreSQL schema (migrated by its own version), so each
reads the whole backlog into empty tables. CPU is the process's user + sys from wait4 and
peak RSS its own VmHWM (``weir_phase.run_measured``); both sides run the settings of this
checkout's ``config/example.yaml``, each with its own code and schemas. Each run's tables
are digested (every column but ``ingested_at``), so the report also says whether both
versions wrote the very same rows.

    .venv/bin/python -m benchmarks.ab --base main --head my-branch --events 300000 --pairs 3

``--mapped``: rich orders (``weir produce --rich``) into the example's mapped columns,
without child tables, as the mapped row of ``make bench``.

Results: ``benchmarks/results/<date>-ab-<base>-<head>.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks import weir_phase
from benchmarks.env import (
    BOOTSTRAP,
    DSN,
    ROOT,
    Names,
    drop,
    loadavg,
    machine,
    weir,
    weir_env,
    write_config,
)

TABLES = ["orders", "page_views"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git ref of the version to compare against")
    p.add_argument("--head", required=True, help="git ref of the version under test")
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--pairs", type=int, default=3, help="runs of each version")
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--mapped", action="store_true",
                   help="rich orders (weir produce --rich) into the example's mapped "
                        "columns, without child tables: the mapped row of make bench")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args()


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


class Side:
    """One version: its ref, its commit and its checkout."""

    def __init__(self, label: str, ref: str, folder: Path) -> None:
        self.label, self.ref = label, ref
        self.sha = git("rev-parse", "--short", f"{ref}^{{commit}}")
        self.tree = folder / label
        git("worktree", "add", "--detach", str(self.tree), self.sha)

    def env(self) -> dict[str, str]:
        """This version's code first on the path (the commands run in its checkout, too)."""
        return weir_env() | {"PYTHONPATH": str(self.tree)}

    def remove(self) -> None:
        git("worktree", "remove", "--force", str(self.tree))


def run_config(backlog: Names, names: Names, side: Side, partitions: int,
               mapped: bool = False) -> Path:
    """The example settings on the backlog's topics, with ``names``' group and schema and
    ``side``'s own schema files (``mapped``: with the orders' mapped columns)."""
    path = write_config(names, partitions, mapped=mapped, children=False)
    config = yaml.safe_load(path.read_text())
    config["topics"] = [{"name": t, "event_type": et} for et, t in backlog.topics.items()]
    # The backlog is JSON: a version from before the registry formats refuses the block.
    config.pop("schema_registry", None)
    for et in config["event_types"].values():
        et["schema_file"] = str(side.tree / "schemas" / Path(et["schema_file"]).name)
    path.write_text(yaml.safe_dump(config))
    return path


async def digest(schema: str) -> dict[str, Any]:
    """Rows and an md5 of every column but ``ingested_at``, per table, in offset order."""
    conn = await asyncpg.connect(DSN)
    try:
        out = {}
        for table in TABLES:
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 "
                "AND table_name = $2 AND column_name <> 'ingested_at' ORDER BY ordinal_position",
                schema, table)
            names = ", ".join(f'"{c["column_name"]}"' for c in columns)
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(string_agg(md5(t::text), '' ORDER BY kafka_topic, "
                f"kafka_partition, kafka_offset)) AS md5 FROM (SELECT {names} FROM "
                f"{schema}.{table}) t")
            assert row is not None  # an aggregate always returns its one row
            out[table] = {"rows": row["n"], "md5": row["md5"]}
        return out
    finally:
        await conn.close()


async def drop_dead_letter_topics(backlog: Names) -> None:
    """The backlog's ``<topic>.dlq`` topics, which every run's migrate makes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        topics = [f"{t}.dlq" for t in backlog.topics.values() if f"{t}.dlq" in existing]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


def one_run(side: Side, backlog: Names, args: argparse.Namespace, pair: int) -> dict[str, Any]:
    names = Names.fresh("ab")
    config = run_config(backlog, names, side, args.partitions, args.mapped)
    try:
        subprocess.run(weir("migrate", "-c", str(config)), cwd=side.tree, env=side.env(),
                       check=True, capture_output=True)
        before = loadavg()
        cost = weir_phase.run_measured(
            weir("run", "-c", str(config), "--until-caught-up"),
            weir_phase.work_file(f"{names.suffix}.weir.log"), cwd=side.tree, env=side.env())
        after = loadavg()
        steady = asyncio.run(weir_phase.steady_rate(names.schema, TABLES, args.events))
        tables = asyncio.run(digest(names.schema))
    finally:
        asyncio.run(drop([names]))
    run = {
        "side": side.label, "ref": side.ref, "sha": side.sha, "pair": pair,
        "exit_code": cost.exit_code, "cpu_s": round(cost.cpu_s, 2),
        "cpu_s_per_million": round(cost.cpu_s / args.events * 1e6, 2),
        "peak_rss_mb": round(cost.max_rss_mb, 1), "wall_s": round(cost.wall_s, 2),
        "events_per_s": round(steady["events_per_s"]), "tables": tables,
        "load_before": before, "load_after": after,
    }
    print(f"[ab] {side.label} {side.sha} pair {pair}: {run['cpu_s_per_million']} CPU-s per "
          f"million, {run['peak_rss_mb']} MB, {run['events_per_s']:,} events/s, load "
          f"{before[0]} -> {after[0]}", flush=True)
    return run


def summary(runs: list[dict[str, Any]], sides: list[Side]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in sides:
        mine = [r for r in runs if r["side"] == side.label]
        out[side.label] = {key: statistics.median(r[key] for r in mine) for key in
                           ("cpu_s_per_million", "peak_rss_mb", "events_per_s", "wall_s")}
    base, head = out["base"], out["head"]
    out["head_vs_base"] = {key: round(head[key] / base[key], 3) for key in
                           ("cpu_s_per_million", "peak_rss_mb", "events_per_s")}
    out["same_rows"] = len({json.dumps(r["tables"], sort_keys=True) for r in runs}) == 1
    out["all_exited_0"] = all(r["exit_code"] == 0 for r in runs)
    return out


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    sides = results["sides"]
    what = ("rich orders and page views into the mapped columns" if results.get("mapped")
            else "events")
    lines = [
        f"A/B `{results['name']}`: {results['events']:,} {what} ({results['partitions']} "
        f"partitions), `weir run --until-caught-up` of each version {results['pairs']} times, "
        f"alternately, on the same backlog; {results['machine']['cpus']} CPUs.",
        "",
        f"- base: `{sides['base']['ref']}` ({sides['base']['sha']})",
        f"- head: `{sides['head']['ref']}` ({sides['head']['sha']})",
        "",
        "| run | version | CPU-s per million events | peak RSS MB | events/s | wall s "
        "| 1-min load before → after |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(results["runs"], 1):
        lines.append(f"| {i} | {r['side']} ({r['sha']}) | {r['cpu_s_per_million']:.2f} | "
                     f"{r['peak_rss_mb']:.1f} | {r['events_per_s']:,} | {r['wall_s']:.1f} | "
                     f"{r['load_before'][0]} → {r['load_after'][0]} |")
    for side in ("base", "head"):
        m = s[side]
        lines.append(f"| median | **{side}** | **{m['cpu_s_per_million']:.2f}** | "
                     f"**{m['peak_rss_mb']:.1f}** | **{m['events_per_s']:,.0f}** | "
                     f"{m['wall_s']:.1f} | |")
    ratio = s["head_vs_base"]
    lines += [
        "",
        f"Head against base (medians): CPU per event x {ratio['cpu_s_per_million']}, peak RSS "
        f"x {ratio['peak_rss_mb']}, events/s x {ratio['events_per_s']}. Every run wrote the "
        f"same rows (digest of every column but `ingested_at`): "
        f"{'yes' if s['same_rows'] else '**no**'}; every run exited 0: "
        f"{'yes' if s['all_exited_0'] else '**no**'}.",
    ]
    return "\n".join(lines) + "\n"


def slug(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", ref)


def main() -> int:
    args = parse()
    folder = Path(tempfile.mkdtemp(prefix="weir-ab-"))
    sides: list[Side] = []
    backlog = Names.fresh("abk")
    runs: list[dict[str, Any]] = []
    try:
        sides = [Side("base", args.base, folder), Side("head", args.head, folder)]
        produce_config = write_config(backlog, args.partitions)
        print(f"[ab] producing {args.events:,} events (load {loadavg()})", flush=True)
        produced = weir_phase.produce(produce_config, args.events, None, rich=args.mapped)
        for pair in range(args.pairs):
            order = sides if pair % 2 == 0 else sides[::-1]
            runs += [one_run(side, backlog, args, pair) for side in order]
    finally:
        asyncio.run(drop([backlog]))
        asyncio.run(drop_dead_letter_topics(backlog))
        for side in sides:
            side.remove()
        shutil.rmtree(folder, ignore_errors=True)
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    name = f"{date}-ab-{'mapped-' if args.mapped else ''}{slug(args.base)}-{slug(args.head)}"
    results = {
        "name": name, "events": args.events, "partitions": args.partitions,
        "mapped": args.mapped,
        "pairs": args.pairs, "produced": produced, "machine": machine(),
        "sides": {s.label: {"ref": s.ref, "sha": s.sha} for s in sides},
        "runs": runs, "summary": summary(runs, sides),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    table = markdown(results)
    path.with_suffix(".md").write_text(table)
    print(table)
    print(f"[ab] results: {path}")
    return 0 if results["summary"]["all_exited_0"] else 1


if __name__ == "__main__":
    sys.exit(main())
