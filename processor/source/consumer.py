"""The Kafka side: one aiokafka consumer in the group, seeking to offsets stored in PostgreSQL.

PostgreSQL's offsets table is the source of truth for where to resume. Offsets are also
committed to Kafka, after the PostgreSQL commit, so standard lag tools see the group's
progress; a failed Kafka commit costs nothing but a stale lag figure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from processor.core import metrics
from processor.core.connections import kafka_client
from processor.core.offsets import OffsetStore
from processor.core.progress import PartitionProgress, ProgressBook
from processor.core.records import TopicPartitionKey
from processor.core.retry import retry_transient, unless_fatal
from processor.core.settings import Settings
from processor.core.stalls import Stalls
from processor.source import fetch_results

log = structlog.get_logger(__name__)

Fetched = list[tuple[PartitionProgress, list[Any]]]
DrainHook = Callable[[set[TopicPartitionKey]], Awaitable[None]]


def _key(tp: TopicPartition) -> TopicPartitionKey:
    return (tp.topic, tp.partition)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source.on_assigned(assigned)


class KafkaSource:
    """Fetches records for the owned partitions and keeps their progress book."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, store: OffsetStore, book: ProgressBook,
        drain: DrainHook, stalls: Stalls,
    ) -> None:
        k = settings.kafka
        self._stalls = stalls
        self._settings = settings
        self._pool = pool
        self._store = store
        self._book = book
        self._drain = drain
        self._topics = [t.name for t in settings.topics]
        self._committed: dict[TopicPartitionKey, int] = {}
        self.joined = False  # an assignment (maybe empty) arrived: we are in the group
        fetch_results.install()  # a paused partition's prefetched bytes freed at once
        self.consumer = AIOKafkaConsumer(
            **kafka_client(k),
            group_id=k.group_id,
            client_id=k.client_id,
            enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset,
            isolation_level=k.isolation_level,
            max_partition_fetch_bytes=k.max_partition_fetch_bytes,
            fetch_max_bytes=k.fetch_max_bytes,
            group_instance_id=k.group_instance_id,
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms,
            max_poll_interval_ms=k.max_poll_interval_ms,
        )

    async def start(self) -> None:
        """Connect and join the group; may be called again after a failed start."""
        if not self.consumer.subscription():
            self.consumer.subscribe(topics=self._topics, listener=_Listener(self))
        await self.consumer.start()
        log.info("consumer started", topics=self._topics, group=self._settings.kafka.group_id)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Seek every new partition to its stored offset before any record of it is fetched."""
        stored = await retry_transient(
            lambda: self._store.load(self._pool, self._topics), "stored offsets",
            operation="load_offsets", stalls=self._stalls,
        )
        for tp in sorted(assigned):
            start = stored.get(_key(tp))
            if start is not None:
                self.consumer.seek(tp, start)
            self._book.assign(_key(tp), start)
        self.joined = True
        metrics.REBALANCES.inc()
        metrics.ASSIGNED_PARTITIONS.set(len(self._book.owned()))
        log.info("partitions assigned",
                 partitions=[f"{t}:{p}" for t, p in sorted(_key(tp) for tp in assigned)],
                 resume_at={f"{t}:{p}": o for (t, p), o in sorted(stored.items())
                            if TopicPartition(t, p) in assigned})

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish (or abandon) the revoked partitions' work before they move to a new owner."""
        keys = {_key(tp) for tp in revoked}
        if keys:
            await self._drain(keys)  # writes what it can and checkpoints those partitions
        self._book.revoke(keys)
        metrics.ASSIGNED_PARTITIONS.set(len(self._book.owned()))
        log.info("partitions revoked", partitions=sorted(f"{t}:{p}" for t, p in keys))

    async def fetch(self) -> Fetched:
        """One ``getmany``, each partition's records paired with its progress at fetch time."""
        k = self._settings.kafka
        batches = await self.consumer.getmany(
            timeout_ms=k.fetch_timeout_ms, max_records=k.fetch_max_records
        )
        fetched: Fetched = []
        for tp, records in batches.items():
            if not records:
                continue
            progress = self._book.get(_key(tp))
            if progress is None:
                self._refetch(tp, records[0].offset)
                continue
            metrics.EVENTS_CONSUMED.labels(tp.topic).inc(len(records))
            fetched.append((progress, records))
        return fetched

    def _refetch(self, tp: TopicPartition, offset: int) -> None:
        """Records of a partition whose assignment is still being handled: aiokafka fetches
        as soon as it is assigned, while :meth:`on_assigned` still waits for the stored
        offsets. Dropped, they would be skipped (the position is already past them); the
        position goes back to them instead, and once the partition is in the book (sought to
        its stored offset, if it has one) they are fetched again."""
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)

    async def commit(self, only: set[TopicPartitionKey] | None = None) -> None:
        """Commit the written watermarks to Kafka, for lag tools. Best effort."""
        offsets: dict[TopicPartition, int] = {}
        for tp, progress in self._book.owned().items():
            mark = progress.written_until
            if (only is None or tp in only) and mark is not None \
                    and self._committed.get(tp) != mark:
                offsets[TopicPartition(*tp)] = mark
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # Best effort: PostgreSQL's offsets are what resumes. Only what no retry can fix
            # (an authentication refused) is not Kafka's to shrug off.
            unless_fatal(exc, "kafka commit failed; postgres offsets stay authoritative")
            return
        self._committed.update({_key(tp): off for tp, off in offsets.items()})

    async def caught_up(self) -> bool:
        """True when every owned partition's position has reached its end offset."""
        owned = [TopicPartition(*tp) for tp in self._book.owned()]
        if not owned:
            return False
        ends = await self.consumer.end_offsets(owned)
        for tp in owned:
            progress = self._book.get(_key(tp))
            if progress is None or not progress.idle:
                return False
            if await self.consumer.position(tp) < ends[tp]:
                return False
        return True

    async def stop(self) -> None:
        """Leave the group and close the connections."""
        await self.consumer.stop()
