"""Throughput of 1, 2, 3 … `weir run` processes in one group, on the local stack.

Either N separate replicas (``--replicas``), or one ``weir run --workers N`` (``--workers``),
its supervisor starting the N processes. For each count: an isolated schema, group and pair
of topics; a backlog of ``--events`` sample events produced first; then the N replicas (or
the one supervisor) started together. Rows landing
in PostgreSQL are sampled every half second and the rate is taken between 10 % and 90 %
of the backlog (group formation and the tail are left out). Numbers from a shared machine
are indicative: run it on an idle one for figures you quote.

    .venv/bin/python benchmarks/scale_out.py --replicas 1 2 3 --events 200000
    .venv/bin/python benchmarks/scale_out.py --workers 1 2 --events 200000 --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import yaml
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = "127.0.0.1:19092"
DSN = "postgresql://weir:weir@127.0.0.1:15432/weir"


def write_config(folder: Path, suffix: str, partitions: int) -> Path:
    config = yaml.safe_load((ROOT / "deploy/config/local.yaml").read_text())
    config["kafka"] |= {"group_id": f"scale-{suffix}", "topic_partitions": partitions}
    config["postgres"] |= {"dsn": DSN, "schema_name": f"scale_{suffix}"}
    config["metrics"] = {"enabled": False}
    for et in config["event_types"].values():
        et["schema_file"] = str(ROOT / "schemas" / Path(et["schema_file"]).name)
    for topic in config["topics"]:
        topic["name"] = f"scale.{suffix}.{topic['name']}"
    path = folder / f"scale-{suffix}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def weir(*args: str) -> list[str]:
    return [sys.executable, "-m", "processor", *args]


async def count_rows(conn: asyncpg.Connection, schema: str) -> int:
    rows = f"(SELECT count(*) FROM {schema}.orders) + (SELECT count(*) FROM {schema}.page_views)"
    dead = f"(SELECT count(*) FROM {schema}.weir_dead_letters)"
    return int(await conn.fetchval(f"SELECT {rows} + {dead}"))


async def sample(procs: list[subprocess.Popen[bytes]], schema: str) -> list[tuple[float, int]]:
    """(time, rows written) every half second until every replica has exited."""
    conn = await asyncpg.connect(DSN)
    samples: list[tuple[float, int]] = []
    try:
        while any(p.poll() is None for p in procs):
            samples.append((time.monotonic(), await count_rows(conn, schema)))
            await asyncio.sleep(0.5)
        samples.append((time.monotonic(), await count_rows(conn, schema)))
        return samples
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def delete_topics(topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


def measure(replicas: int, events: int, partitions: int, folder: Path,
            workers: int = 1) -> dict[str, float]:
    suffix = uuid.uuid4().hex[:8]
    config = write_config(folder, suffix, partitions)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    subprocess.run(weir("migrate", "-c", str(config)), check=True, env=env, capture_output=True)
    produced = subprocess.run(weir("produce", "-c", str(config), "--count", str(events),
                                   "--no-progress"), check=True, env=env, capture_output=True,
                              text=True)
    run = weir("run", "-c", str(config), "--until-caught-up", "--workers", str(workers))
    started = time.monotonic()
    procs = [subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(replicas)]
    try:
        samples = asyncio.run(sample(procs, f"scale_{suffix}"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        topics = [t["name"] for t in yaml.safe_load(config.read_text())["topics"]]
        asyncio.run(delete_topics(topics))
    # drop_bots filters some page views: the total is what was written in the end.
    total = samples[-1][1]
    lo = next(s for s in samples if s[1] >= 0.1 * total)
    hi = next(s for s in samples if s[1] >= 0.9 * total)
    rate = (hi[1] - lo[1]) / max(hi[0] - lo[0], 1e-9)
    wall = samples[-1][0] - started
    print(f"replicas={replicas} workers={workers} events={events} rows={total} "
          f"rate_10_90={rate:,.0f} rows/s wall={wall:.1f}s  ({produced.stdout.strip()})",
          flush=True)
    return {"replicas": replicas, "workers": workers, "events": events, "rows": total,
            "rate_10_90_rows_per_s": round(rate), "wall_s": round(wall, 1),
            "load_average_1m": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", type=int, nargs="+",
                        help="Measure one `weir run --workers N` per N instead of replicas.")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--out", type=Path, help="Append each figure as a JSON line here.")
    args = parser.parse_args()
    folder = ROOT / "benchmarks" / "results" / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    runs = [(1, w) for w in args.workers] if args.workers else [(n, 1) for n in args.replicas]
    for replicas, workers in runs:
        figure = measure(replicas, args.events, args.partitions, folder, workers)
        if args.out is not None:
            with args.out.open("a") as out:
                out.write(json.dumps(figure) + "\n")


if __name__ == "__main__":
    main()
