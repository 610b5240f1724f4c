"""A rolling restart of one member of three, under load: dynamic against static membership.

For each mode, on the local stack with its own schema, group and topics: ``weir produce``
publishes at a steady ``--rate``; three ``weir run`` members share the group (in ``static``
mode each has ``kafka.group_instance_id`` ``m0``, ``m1``, ``m2``); once they have settled,
member 0 gets SIGTERM and is started again at once, as a rollout does. From then on, for
``--observe-s`` seconds, the group's lag (end offsets minus the offsets Weir commits to
Kafka after each PostgreSQL commit) is sampled every half second, and every member's log is
read for the partitions it revoked. The figures go to
``benchmarks/results/<date>-static-membership-<commit>.{json,md}``.

    .venv/bin/python -m benchmarks.static_membership --rate 2000 --partitions 12
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.env import (
    BOOTSTRAP,
    ROOT,
    WORK,
    Names,
    drop,
    git_sha,
    loadavg,
    machine,
    weir,
    weir_env,
    write_config,
)

MEMBERS = 3
SETTLE_S = 15.0


class Member:
    """One ``weir run`` process of the group, its log in a file."""

    def __init__(self, config: Path, index: int, static: bool) -> None:
        self.index = index
        self.log = WORK / f"{config.stem}-m{index}.log"
        self.env = weir_env() | ({"WEIR_KAFKA__GROUP_INSTANCE_ID": f"m{index}"}
                                 if static else {})
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(weir("run", "--config", str(self.config)),
                                         stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(90)

    def revoked_since(self, offset: int) -> int:
        """Partitions this member revoked in its log after byte ``offset``."""
        count = 0
        with self.log.open("rb") as log:
            log.seek(offset)
            for raw in log:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict) and line.get("event") == "partitions revoked":
                    count += len(line.get("partitions", []))
        return count

    def size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


async def lag(names: Names, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> int:
    """The group's lag as KEDA and ``weir lag`` see it: end offsets minus the offsets Weir
    commits to Kafka after each PostgreSQL commit (filtered events count as done)."""
    parts = [TopicPartition(t, p) for t in names.topics.values()
             for p in consumer.partitions_for_topic(t) or ()]
    ends = await consumer.end_offsets(parts)
    committed = await admin.list_consumer_group_offsets(names.group)
    return int(sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                          else 0) for tp, end in ends.items()))


async def observe(names: Names, seconds: float) -> list[tuple[float, int]]:
    consumer = AIOKafkaConsumer(*names.topics.values(), bootstrap_servers=BOOTSTRAP)
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await consumer.start()
    await admin.start()
    try:
        samples = []
        start = time.monotonic()
        while (now := time.monotonic() - start) < seconds:
            samples.append((round(now, 1), await lag(names, consumer, admin)))
            await asyncio.sleep(0.5)
        return samples
    finally:
        await consumer.stop()
        await admin.close()


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    static = mode == "static"
    names = Names.fresh(f"sm{mode[0]}")
    config = write_config(names, args.partitions, {
        "kafka": {"session_timeout_ms": args.session_timeout_ms,
                  "heartbeat_interval_ms": 1000},
        "logging": {"format": "json", "level": "info"}})
    try:
        subprocess.run(weir("migrate", "--config", str(config)), check=True,
                       capture_output=True, env=weir_env())
        total = int(args.rate * (SETTLE_S + args.observe_s + 30))
        producer = subprocess.Popen(
            weir("produce", "--config", str(config), "--count", str(total), "--rate",
                 str(args.rate), "--no-progress"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=weir_env())
        members = [Member(config, i, static) for i in range(MEMBERS)]
        for member in members:
            member.start()
        time.sleep(SETTLE_S)
        before = asyncio.run(observe(names, 3.0))
        marks = [m.size() for m in members]
        restarted_at = time.monotonic()
        exit_code = members[0].stop()
        members[0].start()
        down_s = round(time.monotonic() - restarted_at, 1)
        samples = asyncio.run(observe(names, args.observe_s))
        revoked = [m.revoked_since(mark) for m, mark in zip(members, marks, strict=True)]
        for member in members:
            member.stop()
        producer.kill()
        producer.wait(30)
        baseline = max(lag for _, lag in before)
        peak = max(lag for _, lag in samples)
        limit = max(baseline, 1) * 2
        over = [t for t, x in samples if x > limit]
        # When the lag was last over twice its level before the restart (None: still is).
        recovered = None if over and over[-1] == samples[-1][0] else (
            round(over[-1] + 0.5, 1) if over else 0.0)
        return {
            "mode": mode, "members": MEMBERS, "partitions_per_topic": args.partitions,
            "rate": args.rate, "session_timeout_ms": args.session_timeout_ms,
            "restarted_exit_code": exit_code, "restart_s": down_s,
            "revoked_by_restarted": revoked[0], "revoked_by_others": sum(revoked[1:]),
            "lag_before_max": baseline, "lag_peak": peak,
            "lag_back_under_2x_baseline_s": recovered, "samples": samples,
        }
    finally:
        asyncio.run(drop([names]))


def write(results: list[dict[str, Any]], run: str) -> Path:
    out = ROOT / "benchmarks" / "results"
    data = {"run": run, "machine": machine(), "load": loadavg(), "results": results}
    (out / f"{run}.json").write_text(json.dumps(data, indent=2))
    rows = [
        "| membership | partitions revoked by the restarted member | by the other two | "
        "lag before (max) | lag peak | back under 2 x baseline after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        back = r["lag_back_under_2x_baseline_s"]
        rows.append(f"| {r['mode']} | {r['revoked_by_restarted']} | {r['revoked_by_others']} | "
                    f"{r['lag_before_max']:,} | {r['lag_peak']:,} | "
                    f"{'—' if back is None else f'{back} s'} |")
    first = results[0]
    text = "\n".join([
        f"Run `{run}`: {MEMBERS} `weir run` members, two topics of "
        f"{first['partitions_per_topic']} partitions, `weir produce --rate {first['rate']}`, "
        f"`kafka.session_timeout_ms` {first['session_timeout_ms']}; member 0 restarted "
        "(SIGTERM, then started again at once) after the group settled. Lag: the group's end "
        "offsets minus its committed offsets (Weir commits after each PostgreSQL commit), "
        "sampled every 0.5 s for the observation window.",
        "", *rows, "",
        "Command: `.venv/bin/python -m benchmarks.static_membership "
        f"--rate {first['rate']} --partitions {first['partitions_per_topic']}`.", ""])
    path = out / f"{run}.md"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--observe-s", type=float, default=40.0)
    parser.add_argument("--session-timeout-ms", type=int, default=30_000)
    parser.add_argument("--modes", nargs="+", default=["dynamic", "static"],
                        choices=["dynamic", "static"])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = [run_mode(mode, args) for mode in args.modes]
    run = f"{dt.date.today().isoformat()}-static-membership-{git_sha()}"
    print(write(results, run).read_text())


if __name__ == "__main__":
    main()
