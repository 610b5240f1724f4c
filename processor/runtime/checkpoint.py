"""Checkpoints: watermarks that moved after their batch committed, into PostgreSQL, then Kafka.

A lane stores, inside its batch transaction, the watermark as it would be once that batch
is written. When lanes commit concurrently, each computes its value before the others
finish, so the highest watermark may exist only in memory. The checkpointer writes such
watermarks in a small transaction of their own (writer ``CHECKPOINT_WRITER``): every
value it writes is already true, because it only counts committed batches. Then it
commits the same offsets to Kafka, for lag tools.

It runs every ``kafka.commit_interval_s``, on revocation (for the partitions that move)
and at shutdown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from processor.core.offsets import OffsetStore
from processor.core.progress import ProgressBook
from processor.core.records import TopicPartitionKey
from processor.core.retry import unless_fatal
from processor.core.tasks import pause

log = structlog.get_logger(__name__)

CHECKPOINT_WRITER = -1


class Checkpointer:
    """Persists in-memory watermarks that are ahead of what PostgreSQL holds."""

    def __init__(
        self, pool: asyncpg.Pool, store: OffsetStore, book: ProgressBook,
        commit: Callable[[set[TopicPartitionKey] | None], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._store = store
        self._book = book
        self._commit = commit  # the same offsets to Kafka: the source's
        self._saved: dict[TopicPartitionKey, int] = {}

    async def run(self, interval_s: float) -> None:
        """The owned background task: a checkpoint every ``interval_s`` until cancelled."""
        while True:
            await pause(interval_s)
            await self.checkpoint()

    async def checkpoint(self, only: set[TopicPartitionKey] | None = None) -> None:
        """Save advanced watermarks to PostgreSQL, then commit them to Kafka."""
        marks = {
            tp: p.written_until for tp, p in self._book.owned().items()
            if (only is None or tp in only) and p.written_until is not None
            and p.written_until > self._saved.get(tp, -1)
        }
        if marks:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await self._store.save(conn, CHECKPOINT_WRITER, marks)
            except Exception as exc:  # noqa: BLE001 - unless_fatal re-raises a fatal one
                # The lanes' own offsets stay correct; this only delays a resume point. A
                # server away, read-only or refusing the offsets table: the next interval
                # tries again, and the lanes (which stall on the same cause) say why.
                unless_fatal(exc, "checkpoint failed; will retry")
                return
            self._saved.update(marks)
        await self._commit(only)
