"""`weir migrate`'s waiting for a busy table, in-process against the real PostgreSQL.

The migration's DDL takes strong locks; a table busy with another transaction makes it hit
its lock timeout, which the one retry policy waits out a bounded number of times.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from processor.contracts import load_contracts
from processor.core.settings import load_settings
from processor.schema import migrate as migration
from tests.integration.conftest import Harness


async def _busy_then_free(h: Harness, free_after_busy: int) -> list[str]:
    """Migrate while another transaction holds the dead-letter table; let it go after the
    migration said it is busy ``free_after_busy`` times (never, when 0)."""
    settings = load_settings(h.config)
    contracts = load_contracts(settings)
    table = f"{h.schema}.{settings.postgres.dead_letter_table}"
    holder = await asyncpg.connect(h.dsn)
    conn = await asyncpg.connect(h.dsn)
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
        released = False
        with capture_logs() as logs:
            running = asyncio.ensure_future(migration.migrate(conn, settings, contracts))
            while free_after_busy and not running.done():
                busy = [e for e in logs if e["event"].startswith("a table is busy")]
                if len(busy) >= free_after_busy:
                    await hold.rollback()
                    released = True
                    break
                await asyncio.sleep(0.02)
            try:
                await running
            finally:
                if not released:
                    await hold.rollback()
        return [e["event"] for e in logs]
    finally:
        await conn.close()
        await holder.close()


def test_a_busy_table_is_waited_for_then_migrated(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migration, "LOCK_TIMEOUT_MS", 100)
    h = Harness(tmp_path)
    h.migrate()
    try:
        events = asyncio.run(_busy_then_free(h, free_after_busy=2))
        assert events.count("a table is busy; trying the migration again") >= 2
        assert events[-1] == "migrated"
    finally:
        h.cleanup()


def test_a_table_busy_past_every_attempt_is_reported(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migration, "LOCK_TIMEOUT_MS", 100)
    monkeypatch.setattr(migration, "LOCK_ATTEMPTS", 3)
    h = Harness(tmp_path)
    h.migrate()
    try:
        with pytest.raises(asyncpg.LockNotAvailableError):
            asyncio.run(_busy_then_free(h, free_after_busy=0))
    finally:
        h.cleanup()
