"""Outage soak (``make soak``): PostgreSQL stopped, frozen, restarted and its connections
terminated mid-COPY, over and over, under a steady load. Weir must never exit, and at the
end every acknowledged event is in its table exactly once.

Outside ``make test``: ten cycles of four faults take about 20 minutes. Runs against a
private PostgreSQL (the faults would disturb anything else) and the local Kafka from
``make up``. Figures go to standard output and, as JSON, to ``--out``.

    .venv/bin/python scripts/soak.py --cycles 10 --out soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import ROWS, Harness
from tests.integration.servers import PrivatePostgres
from tests.integration.test_exactly_once import check_exactly_once

FAULTS = ("stop", "freeze", "restart", "terminate")
DUPLICATES = ("SELECT (SELECT count(*) - count(DISTINCT event_id) FROM orders) + "
              "(SELECT count(*) - count(DISTINCT event_id) FROM page_views)")


async def _terminate_mid_copy(dsn: str) -> int:
    """Terminate Weir's backends, waiting (up to 5 s) for one to be inside a COPY."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            busy = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'weir' "
                "AND state = 'active' AND query ILIKE 'COPY%'")
            if busy:
                break
            await asyncio.sleep(0.01)
        killed: int = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'weir' AND pid <> pg_backend_pid()")
        return killed
    finally:
        await conn.close()


class Soak:
    """One private PostgreSQL, one harness, one Weir, one producer, and the fault loop."""

    def __init__(self, root: Path, down_s: float, freeze_s: float, rate: int) -> None:
        self.pg = PrivatePostgres().start()
        self.h = Harness(root, dsn=self.pg.dsn, batch={"max_rows": 500, "linger_ms": 20},
                         pipeline={"lanes": 3, "shutdown_timeout_s": 60})
        self.down_s, self.freeze_s, self.rate = down_s, freeze_s, rate
        self.recoveries: dict[str, list[float]] = {f: [] for f in FAULTS}

    def rows(self) -> int:
        value: int = self.h.scalar(ROWS)
        return value

    def alive(self, weir: subprocess.Popen[bytes]) -> None:
        if weir.poll() is not None:
            raise SystemExit("FAIL: " + self.h.why_exited(weir))

    def progress_after(self, weir: subprocess.Popen[bytes], healed: float) -> float:
        """Seconds from ``healed`` until rows grow again (Weir is writing)."""
        before = self.rows()
        while self.rows() == before:
            self.alive(weir)
            if time.monotonic() - healed > 300:
                raise SystemExit("FAIL: no progress 300 s after the fault healed")
            time.sleep(0.2)
        return time.monotonic() - healed

    def fault(self, name: str) -> None:
        if name == "stop":
            self.pg.halt()
            time.sleep(self.down_s)
            self.pg.start()
        elif name == "freeze":
            self.pg.freeze()
            time.sleep(self.freeze_s)
            self.pg.thaw()
        elif name == "restart":
            self.pg.restart()
        else:
            asyncio.run(_terminate_mid_copy(self.pg.dsn))

    def run(self, cycles: int) -> dict[str, Any]:
        h = self.h
        h.migrate()
        # Enough events at ``rate`` to outlast the faults, so every fault hits a live load.
        per_cycle = self.down_s + self.freeze_s + 40
        count = int(self.rate * per_cycle * cycles)
        producer = subprocess.Popen(
            h.weir_command("produce", "--count", str(count), "--rate", str(self.rate),
                           "--ack-log", str(h.ack_log), "--no-progress"),
            env=h.process_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        weir = h.start("weir")
        started = time.monotonic()
        try:
            self.progress_after(weir, time.monotonic())
            for cycle in range(cycles):
                for name in FAULTS:
                    self.fault(name)
                    healed = time.monotonic()
                    self.alive(weir)
                    self.recoveries[name].append(round(self.progress_after(weir, healed), 2))
                print(f"cycle {cycle + 1}/{cycles}: alive, {self.rows()} rows, recovery s "
                      + ", ".join(f"{n}={self.recoveries[n][-1]}" for n in FAULTS), flush=True)
            if producer.wait(1800) != 0:
                why = producer.stderr.read() if producer.stderr else b""
                raise SystemExit(f"FAIL: the producer failed: {why!r}")
            acked = len(h.acks())
            h.wait_for(ROWS, acked, timeout=600, alive=[weir])
            weir.send_signal(signal.SIGTERM)
            code = weir.wait(120)
            duplicated = h.scalar(DUPLICATES)
            check_exactly_once(h)  # L, D, O by SQL against the acknowledgement log
            dead = h.scalar("SELECT count(*) FROM weir_dead_letters")
            return self.figures(cycles, acked, code, dead, duplicated,
                                time.monotonic() - started)
        finally:
            if producer.poll() is None:
                producer.kill()
            self.pg.ensure_started()
            h.cleanup()
            self.pg.stop()

    def figures(self, cycles: int, acked: int, code: int, dead: int, duplicated: int,
                seconds: float) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float]:
            ordered = sorted(values)
            return {"min": ordered[0], "median": ordered[len(ordered) // 2],
                    "max": ordered[-1]}
        return {
            "cycles": cycles, "faults_per_cycle": list(FAULTS),
            "down_s": self.down_s, "freeze_s": self.freeze_s, "rate_per_s": self.rate,
            "events_acknowledged": acked, "rows": self.rows(), "dead_letters": dead,
            "lost": acked - (self.rows() - duplicated), "duplicated": duplicated,
            "exit_code_after_sigterm": code, "seconds": round(seconds, 1),
            "recovery_s": {n: stats(v) for n, v in self.recoveries.items()},
        }


def main(argv: list[str] | None = None, make: Callable[..., Soak] = Soak) -> int:
    """Run the soak; 0 when Weir stayed up and every event landed exactly once."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--cycles", type=int, default=10)
    args.add_argument("--down-s", type=float, default=30.0)
    args.add_argument("--freeze-s", type=float, default=30.0)
    args.add_argument("--rate", type=int, default=400, help="events per second offered")
    args.add_argument("--out", type=Path, default=None, help="write the figures here (JSON)")
    opts = args.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="weir-soak-"))
    figures = make(root, opts.down_s, opts.freeze_s, opts.rate).run(opts.cycles)
    text = json.dumps(figures, indent=2)
    print(text)
    if opts.out is not None:
        opts.out.write_text(text + "\n")
    ok = (figures["lost"] == 0 and figures["duplicated"] == 0
          and figures["exit_code_after_sigterm"] == 0)
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
