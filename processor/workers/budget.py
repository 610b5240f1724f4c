"""PostgreSQL connections N workers need, against what the server allows.

Each worker is a whole Weir: its pool (``postgres.pool_size``) plus one connection of its
own that the readiness probe opens while no batch committed recently. (Start-up's contract
check closes its connection before the pool opens, so it adds nothing at the peak.) A
server out of connections refuses new ones with "too many clients", which Weir retries
forever: checking once, before any worker starts, turns that into one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog

from processor.core.connections import postgres_client
from processor.core.errors import describe
from processor.core.settings import Settings

log = structlog.get_logger(__name__)

# Connections a worker opens beyond its pool (the readiness probe's).
EXTRA_PER_WORKER = 1
# Below this share of the server's connections left over, the budget fits but warns.
HEADROOM = 0.2


class BudgetExceeded(Exception):
    """The workers' connections cannot fit in the server's ``max_connections``."""


@dataclass(frozen=True, slots=True)
class ServerLimit:
    """What the server allows: ``max_connections`` less the superusers' reserve."""

    max_connections: int
    reserved: int
    in_use: int

    @property
    def available(self) -> int:
        """Connections a non-superuser role can open, at most."""
        return self.max_connections - self.reserved


def needed(settings: Settings, workers: int) -> int:
    """Connections ``workers`` workers open at most."""
    return workers * (settings.postgres.pool_size + EXTRA_PER_WORKER)


async def server_limit(settings: Settings) -> ServerLimit:
    """Ask the server (one short connection)."""
    pg = settings.postgres
    conn = await asyncpg.connect(pg.dsn, **postgres_client(pg))
    try:
        most = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
        in_use = int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
    finally:
        await conn.close()
    return ServerLimit(most, reserved, in_use)


def judge(settings: Settings, workers: int, limit: ServerLimit) -> None:
    """Log the budget; raise :class:`BudgetExceeded` if it cannot fit, warn if it is tight."""
    pool = settings.postgres.pool_size
    need = needed(settings, workers)
    fields = {"workers": workers, "pool_size": pool, "per_worker": pool + EXTRA_PER_WORKER,
              "needed": need, "max_connections": limit.max_connections,
              "superuser_reserved": limit.reserved, "available": limit.available,
              "in_use_now": limit.in_use}
    if need > limit.available:
        raise BudgetExceeded(
            f"--workers {workers} x (postgres.pool_size {pool} + {EXTRA_PER_WORKER}) = {need} "
            f"PostgreSQL connections, but the server allows {limit.available} "
            f"(max_connections {limit.max_connections} - superuser_reserved_connections "
            f"{limit.reserved}): lower --workers or postgres.pool_size")
    if need > (1 - HEADROOM) * limit.available or need + limit.in_use > limit.available:
        log.warning("postgresql connection budget leaves little headroom", **fields)
    else:
        log.info("postgresql connection budget", **fields)


async def check_budget(settings: Settings, workers: int) -> None:
    """:func:`judge` against the live server; a server that does not answer skips the check."""
    try:
        limit = await server_limit(settings)
    except Exception as exc:  # noqa: BLE001 - any failure only skips a check the workers redo
        # A server not answering yet, or refusing this role: the workers wait for it
        # themselves (processor/runtime/startup.py), or exit 2 with the setting to fix, and the
        # supervisor must not fail where a worker would wait.
        log.warning("postgresql connection budget not checked; the workers wait for the "
                    "server, or say why it refuses them", error=describe(exc),
                    workers=workers, needed=needed(settings, workers))
        return
    judge(settings, workers, limit)
