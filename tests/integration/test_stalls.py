"""Stall, never die: a revoked privilege, a read-only server, a database not up at start.

Weir stays up through each, says why on ``/readyz``, writes no dead letter, and resumes by
itself once the cause is gone; afterwards every event is in its table exactly once. A wrong
password at start is the one thing it does not wait for: exit 2, one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from processor.core.records import Chunk, DeadLetter
from processor.core.retry import Backoff, retry_transient
from processor.core.settings import load_settings
from processor.core.verdict import Verdict, verdict
from processor.deadletter.table import DeadLetterTable
from processor.sink.pool import create_pool
from tests.integration.conftest import KAFKA, PG_DSN, ROWS, Harness, as_role, two_roles
from tests.integration.servers import PrivatePostgres, TcpProxy, free_port
from tests.integration.test_exactly_once import check_exactly_once
from tests.integration.test_observability import eventually, get

HOLD_S = 15  # how long each fault lasts


def observed(tmp_path: Path, **extra: Any) -> tuple[Harness, str]:
    port = free_port()
    h = Harness(tmp_path, metrics={"enabled": True, "port": port, "lag_interval_s": 0.5},
                postgres={**extra.pop("postgres", {}), "stall_retry_max_s": 2.0,
                          "breaker_open_s": 1.0}, **extra)
    return h, f"http://127.0.0.1:{port}"


def not_ready_because(base: str, check: str, words: str) -> dict[str, Any] | None:
    """The failing readiness check ``check`` if its error mentions ``words``."""
    status, body = get(f"{base}/readyz")
    if status != 503 or not isinstance(body, dict):
        return None
    failing = body["checks"].get(check, {})
    return failing if words in str(failing.get("error", "")) else None


def stop_cleanly(weir: subprocess.Popen[bytes]) -> None:
    weir.send_signal(signal.SIGTERM)
    assert weir.wait(60) == 0


@pytest.fixture
def runtime_role(tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    """A harness migrated by a migration role and run by a runtime role without superuser
    rights (a superuser ignores privileges, so a REVOKE would change nothing)."""
    h, base = observed(tmp_path)
    with two_roles(h) as (migrator, runtime, suffix):
        as_role(h, migrator, "m-" + suffix)
        h.migrate()
        as_role(h, runtime, "r-" + suffix)
        yield h, base


def test_revoked_insert_stalls_then_resumes_without_dead_letters(
    runtime_role: tuple[Harness, str],
) -> None:
    h, base = runtime_role
    runtime = h.env["WEIR_POSTGRES__DSN"].split("//")[1].split("@")[0]
    h.produce(2000)
    weir = h.start("weir")
    h.wait_for(ROWS, 2000, timeout=120, alive=[weir])
    h.sql(f"REVOKE INSERT ON orders FROM {runtime}")
    revoked = time.monotonic()
    h.produce(3000, "--seq-base", "100000")
    stalled = eventually(lambda: not_ready_because(base, "stalls", "permission denied"),
                         60, "/readyz naming the revoked privilege")
    assert any(part.startswith("lane ") for part in stalled["stalled"])
    _, metrics = get(f"{base}/metrics")
    assert 'weir_stalled{part="lane ' in metrics
    time.sleep(max(0.0, HOLD_S - (time.monotonic() - revoked)))
    assert weir.poll() is None, h.why_exited(weir)
    h.sql(f"GRANT INSERT ON orders TO {runtime}")
    h.wait_for(ROWS, 5000, timeout=120, alive=[weir])
    eventually(lambda: get(f"{base}/readyz")[0] == 200, 60, "ready again")
    stop_cleanly(weir)
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    check_exactly_once(h)
    events = [line.get("event", "") for line in h.log_lines("weir")]
    assert any(e.startswith("stalled:") for e in events)
    assert "stall over; resumed" in events


async def _set_read_only(dsn: str, on: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # This session may itself be read-only by default now: ALTER SYSTEM needs it not.
        await conn.execute("SET default_transaction_read_only = off")
        if on:
            await conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            await conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def test_a_read_only_server_is_waited_out_on_fresh_connections(
    tmp_path: Path, private_pg: PrivatePostgres,
) -> None:
    h, base = observed(tmp_path, dsn=private_pg.dsn)
    h.migrate()
    try:
        h.produce(2000)
        weir = h.start("weir")
        h.wait_for(ROWS, 2000, timeout=120, alive=[weir])
        asyncio.run(_set_read_only(private_pg.dsn, on=True))  # what a failover looks like
        turned = time.monotonic()
        h.produce(3000, "--seq-base", "100000")
        eventually(lambda: not_ready_because(base, "circuit", "read-only"), 60,
                   "/readyz naming the read-only server")
        time.sleep(max(0.0, HOLD_S - (time.monotonic() - turned)))
        assert weir.poll() is None, h.why_exited(weir)
        asyncio.run(_set_read_only(private_pg.dsn, on=False))
        h.wait_for(ROWS, 5000, timeout=120, alive=[weir])
        stop_cleanly(weir)
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        check_exactly_once(h)
    finally:
        asyncio.run(_set_read_only(private_pg.dsn, on=False))
        h.cleanup()


@pytest.mark.parametrize("fault", ["frozen", "stopped"])
def test_start_while_postgres_is_away_waits_then_writes(
    tmp_path: Path, private_pg: PrivatePostgres, fault: str,
) -> None:
    h, base = observed(tmp_path, dsn=private_pg.dsn, postgres={"connect_timeout_s": 2})
    h.migrate()
    try:
        h.produce(3000)
        if fault == "frozen":
            private_pg.freeze()
        else:
            private_pg.halt()
        weir = h.start("weir")
        waiting = eventually(lambda: not_ready_because(base, "startup", "PostgreSQL"), 60,
                             "/readyz saying start-up waits for PostgreSQL")
        assert "waiting_for" in waiting
        time.sleep(8)
        assert weir.poll() is None, h.why_exited(weir)
        if fault == "frozen":
            private_pg.thaw()
        else:
            private_pg.start()
        h.wait_for(ROWS, 3000, timeout=120, alive=[weir])
        stop_cleanly(weir)
        check_exactly_once(h)
        waits = [line for line in h.log_lines("weir")
                 if str(line.get("event", "")).startswith("waiting for PostgreSQL")]
        assert waits, "no log line said what start-up waited for"
        assert all("host" in w and "port" in w and "error" in w for w in waits)
    finally:
        with_thaw(private_pg)
        private_pg.ensure_started()
        h.cleanup()


def test_start_while_kafka_refuses_connections_waits_then_writes(tmp_path: Path) -> None:
    proxy = TcpProxy(int(KAFKA.rsplit(":", 1)[1]))
    # Clients bootstrap through the proxy; the broker then sends them to its own address.
    h, base = observed(tmp_path, kafka={"bootstrap_servers": f"127.0.0.1:{proxy.port}"})
    h.migrate()
    try:
        proxy.open()
        h.produce(2000)
        proxy.close()
        weir = h.start("weir")
        eventually(lambda: not_ready_because(base, "startup", "Kafka"), 60,
                   "/readyz saying start-up waits for Kafka")
        time.sleep(5)
        assert weir.poll() is None, h.why_exited(weir)
        proxy.open()
        h.wait_for(ROWS, 2000, timeout=120, alive=[weir])
        stop_cleanly(weir)
        check_exactly_once(h)
        assert any(str(line.get("event", "")).startswith("waiting for Kafka")
                   for line in h.log_lines("weir"))
    finally:
        proxy.stop()
        h.cleanup()


def with_thaw(pg: PrivatePostgres) -> None:
    """Thaw a server a failed test may have left frozen (a no-op when it is running)."""
    with contextlib.suppress(OSError, ValueError):
        pg.thaw()


def test_a_wrong_password_exits_2_with_one_line(harness: Harness) -> None:
    harness.env["WEIR_POSTGRES__PASSWORD"] = "not-the-password"
    harness.env["WEIR_POSTGRES__DSN"] = PG_DSN.replace("weir:weir@", "weir@")
    started = time.monotonic()
    result = harness.weir("run", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "password authentication failed" in lines[0]
    assert "postgres.password" in lines[0]  # the setting to fix
    assert "not-the-password" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60  # not retried


def test_a_dead_letter_insert_into_a_frozen_server_gives_up_in_time_and_the_pool_recovers(
    tmp_path: Path, private_pg: PrivatePostgres,
) -> None:
    h = Harness(tmp_path, dsn=private_pg.dsn)
    h.migrate()
    settings = load_settings(h.config)
    dead = DeadLetter(topic="t", partition=0, offset=1, timestamp_ms=0, key=None,
                      value=b"x", headers=[], stage="decode", reason="decode_error",
                      error="not JSON", event_type=None, chunk=Chunk(("t", 0), 1, 2))

    async def scenario() -> tuple[float, int]:
        pool = await create_pool(settings, [])
        try:
            table = DeadLetterTable(settings)
            private_pg.freeze()
            started = time.monotonic()
            try:
                with pytest.raises(Exception) as raised:  # noqa: PT011 - any, checked below
                    await table.write_alone(pool, [dead], 2.0)
            finally:
                private_pg.thaw()
            took = time.monotonic() - started
            assert verdict(raised.value) is Verdict.RETRY, raised.value
            # The terminated connection was replaced: the next insert goes through.
            await retry_transient(lambda: table.write_alone(pool, [dead], 10.0), "test",
                                  Backoff(0.05, 0.5))
            count: int = await pool.fetchval(
                f"SELECT count(*) FROM {h.schema}.weir_dead_letters")
            return took, count
        finally:
            pool.terminate()

    try:
        took, count = asyncio.run(scenario())
        assert took < 10, f"the insert waited {took:.1f}s on a frozen server"
        assert count == 1
    finally:
        with_thaw(private_pg)
        h.cleanup()
