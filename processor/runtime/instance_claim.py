"""Static membership's one rule Kafka does not enforce for us: one live member per id.

With ``kafka.group_instance_id`` set, the broker treats a member that joins with a known id
as the same member back from a restart. Two live processes given one id (a copied config, a
StatefulSet scaled by hand) would therefore take turns fencing each other: with aiokafka
each sees its member id forgotten, rejoins and fences the other, and both keep consuming
in turn, silently. So the id is claimed in PostgreSQL first: a session advisory lock,
keyed by the consumer group and the id, on a connection of its own held for the life of the
process (the server releases it when the process dies, however it dies). A second process
with the same id is refused at start with an error that names the holder; a claim lost with
its connection (a database restart) is taken again, or the process stops if another holds
it by then.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import asyncpg
import structlog

from processor.core.connections import postgres_client
from processor.core.errors import InstanceTaken, describe
from processor.core.settings import Settings
from processor.core.verdict import Verdict, verdict

log = structlog.get_logger(__name__)

CHECK_S = 5.0  # how often the claim's connection is looked at


def claim_key(group_id: str, instance_id: str) -> int:
    """The advisory lock's key: a stable signed 64-bit hash of the group and the id."""
    digest = hashlib.blake2b(f"weir-instance\0{group_id}\0{instance_id}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class InstanceClaim:
    """Holds this process's static instance id while it runs."""

    def __init__(self, settings: Settings, instance_id: str) -> None:
        self._settings = settings
        self.instance_id = instance_id
        self._key = claim_key(settings.kafka.group_id, instance_id)
        self._conn: asyncpg.Connection | None = None
        self._name = f"weir {instance_id} pid {os.getpid()} on {socket.gethostname()}"

    async def acquire(self) -> None:
        """Take the claim, or raise :class:`InstanceTaken` naming who holds it."""
        pg = self._settings.postgres
        conn: asyncpg.Connection = await asyncpg.connect(
            pg.dsn, **postgres_client(pg), server_settings={"application_name": self._name[:63]})
        try:
            holder = await self._holder(conn)
        except BaseException:
            await conn.close()
            raise
        if holder is not None:
            await conn.close()
            raise InstanceTaken(
                f"kafka.group_instance_id {self.instance_id!r} of group "
                f"{self._settings.kafka.group_id!r} is held by another live Weir process "
                f"({holder}); two members with one id would fence each other in turn: give "
                "each replica and worker its own id")
        self._conn = conn
        log.info("static instance id claimed", group_instance_id=self.instance_id)

    async def _holder(self, conn: asyncpg.Connection) -> str | None:
        """Take the lock on ``conn``: None, or who holds it instead."""
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
            return None
        holder = await conn.fetchval(
            "SELECT a.application_name || ' (' || coalesce(a.client_addr::text, 'local') "
            "|| ')' FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND "
            "((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1", self._key)
        return str(holder or "unknown")

    async def keep(self) -> None:
        """Run while the process runs: take the claim again if its connection was lost;
        raise :class:`InstanceTaken` if another process took it meanwhile."""
        while True:
            await asyncio.sleep(CHECK_S)
            try:
                if self._conn is not None and await self._alive(self._conn):
                    continue
                self._conn = None
                await self.acquire()
            except Exception as exc:
                # Only a server away or refusing for now is worth another try; the verdict
                # says which (InstanceTaken is fatal: another process holds the id).
                if verdict(exc) not in (Verdict.RETRY, Verdict.STALL):
                    raise
                log.warning("the static instance id's claim is lost with its connection; "
                            "trying again", error=describe(exc), retry_in_s=CHECK_S)

    @staticmethod
    async def _alive(conn: asyncpg.Connection) -> bool:
        """Does the claim's connection still answer? (A dead peer shows only when asked.)"""
        if conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), CHECK_S)
        except Exception as exc:
            if verdict(exc) not in (Verdict.RETRY, Verdict.STALL):
                raise
            conn.terminate()
            return False
        return True

    async def release(self) -> None:
        """Let the id go (closing the connection releases the lock)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
