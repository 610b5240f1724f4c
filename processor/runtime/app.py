"""Wiring: builds the stages, runs them as owned tasks, and shuts them down in order.

    source --(decode queue)--> decode -> partition --(lane buffers)--> sink lanes --> PostgreSQL
       ^                                                                           |
       +------------- watermarks: Kafka commit after the PostgreSQL commit ---------+

Each stage runs its own loop (``FetchLoop.run``, ``DecodeStage.run``, ``Lane.run``,
``Checkpointer.run``, ``maintain_forever``); this module builds them, owns their tasks and
decides the order they stop in.

Shutdown order is the guarantee: stop fetching, decode what was fetched, let every lane
write what it holds, commit the watermarks to Kafka, then leave the group. Past the
deadline, uncommitted work is abandoned; PostgreSQL's offsets make the next owner replay it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import structlog

from processor.batch.buffer import LaneBuffer
from processor.contracts import Contract
from processor.core.offsets import OffsetStore
from processor.core.progress import ProgressBook
from processor.core.records import TopicPartitionKey
from processor.core.retry import retry_transient
from processor.core.settings import Settings
from processor.core.stalls import Stalls
from processor.core.tasks import Stopped, bounded, unless_stopped
from processor.deadletter.places import Places
from processor.deadletter.spool import Spool
from processor.deadletter.table import DeadLetterTable
from processor.deadletter.topic import DeadLetterTopic
from processor.decode.decoder import Decoder
from processor.decode.held import HeldPartitions
from processor.decode.stage import DecodeStage
from processor.observe.health import LoopHeartbeat, ReadinessProbe
from processor.observe.server import ObserveServer
from processor.observe.status import status_document
from processor.observe.wiring import Observability
from processor.partition.router import Router
from processor.registry.parse import schema_book
from processor.registry.schemas import REGISTRY_PART
from processor.runtime.checkpoint import Checkpointer
from processor.runtime.columnar_plans import columnar_plans
from processor.runtime.instance_claim import InstanceClaim
from processor.runtime.mirrors import Mirrors
from processor.runtime.rebalance import RebalanceDrain
from processor.runtime.startup import StartupState, check_tables, wait_for_kafka, wait_for_postgres
from processor.schema.tables import table_spec
from processor.sink.breaker import CircuitBreaker
from processor.sink.lane import Lane
from processor.sink.partitions import maintain, maintain_forever
from processor.sink.pool import create_pool
from processor.sink.writer import BatchWriter
from processor.source.backpressure import Backpressure
from processor.source.consumer import Fetched, KafkaSource
from processor.source.fetch import FetchLoop

if TYPE_CHECKING:
    from processor.transform.chain import Chain

T = TypeVar("T")
log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_ABANDONED = 3
CLOSE_S = 10.0  # for each client's close at exit


class Pipeline:
    """One Weir process: a consumer, a decode stage and K writer lanes."""

    def __init__(self, settings: Settings, contracts: dict[str, Contract],
                 transforms: Mapping[str, Chain | None], mirrors: Mirrors | None = None
                 ) -> None:
        """``mirrors``: the mirrors ``cdc.mirrors`` found, already in ``settings``; the
        pipeline watches for more and stops to be started again (:attr:`reloading`)."""
        self.settings = settings
        self.mirrors = mirrors
        self.reloading: str | None = None  # why it stopped to be started again
        self.contracts = contracts
        self.transforms = transforms
        self.specs = {name: table_spec(c, settings) for name, c in contracts.items()}
        self.book = ProgressBook()
        self.stopping = asyncio.Event()
        self._queue: asyncio.Queue[Fetched | None] = asyncio.Queue(
            settings.pipeline.decode_queue_fetches
        )
        self._buffers = [
            LaneBuffer(settings.lane_hard_limit_rows, settings.lane_hard_limit_bytes)
            for _ in range(settings.pipeline.lanes)
        ]
        self._lanes: list[Lane] = []
        self._checkpointer: Checkpointer | None = None
        self._backpressure: Backpressure | None = None
        self._fetch: FetchLoop | None = None
        self.stalls = Stalls(settings.postgres.on_stall == "exit",
                             settings.postgres.stall_retry_max_s)
        self._startup = StartupState()
        self._heartbeat = LoopHeartbeat()
        # What /readyz asks: start-up's state until the pipeline runs, then the pipeline's.
        self._probes: dict[str, ReadinessProbe] = {"startup": self._startup.probe}
        self._observe: Observability | None = None
        self._claim: InstanceClaim | None = None

    def request_reload(self, reason: str) -> None:
        """Stop gracefully to be started again, with the mirrors found anew."""
        if not self.stopping.is_set():
            log.info("stopping to start again", reason=reason)
            self.reloading = reason
            self.stopping.set()

    def _new_columns(self, event_type: str, fields: dict[str, Any]) -> None:
        assert self.mirrors is not None
        self.request_reload(self.mirrors.notice(event_type, fields))

    def request_stop(self, reason: str) -> None:
        """Begin a graceful shutdown (signal handler, caught-up check); it wins over a
        restart asked for before."""
        self.reloading = None
        if not self.stopping.is_set():
            log.info("stopping", reason=reason)
            self.stopping.set()

    async def run(self, until_caught_up: bool = False) -> int:
        """Run until stopped; return the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        m = self.settings.metrics
        # Up first, so /readyz says what start-up waits for (a database not up yet).
        server = ObserveServer(m.host, m.port, self._heartbeat, self._probes,
                               self._status) if m.enabled else None
        try:
            if server is not None:
                await server.start()
            pool = await self._unless_stopped(self._start_postgres())
            try:
                return await self._run_with(pool, until_caught_up)
            finally:
                if not pool.is_closing() and not await bounded(pool.close(), CLOSE_S):
                    pool.terminate()  # a connection whose server does not answer
        except Stopped:
            log.info("stopped during start-up; nothing was consumed")
            return EXIT_OK
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if server is not None:
                await server.stop()

    async def _start_postgres(self) -> asyncpg.Pool:
        s = self.settings
        await wait_for_postgres(s, lambda: check_tables(s, self.contracts),
                                "PostgreSQL (contract check)", self._startup)
        return await wait_for_postgres(s, lambda: create_pool(s, self.specs.values()),
                                       "PostgreSQL (writers' pool)", self._startup)

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T:
        return await unless_stopped(work, self.stopping)

    def _status(self) -> dict[str, Any]:
        if self._observe is not None:
            return self._observe.status()
        return status_document(False, [], starting=True)

    async def _run_with(self, pool: asyncpg.Pool, until_caught_up: bool) -> int:
        s = self.settings
        store = OffsetStore(s)
        dead_letters = DeadLetterTable(s)
        writer = BatchWriter(pool, s, self.specs, store, dead_letters)
        self.breaker = CircuitBreaker("postgres", s.postgres.breaker_failures,
                                      s.postgres.breaker_open_s)
        # One dead-letter producer per process, started below and stopped last.
        dlq_topic = DeadLetterTopic(s) if s.dead_letters.topic_enabled else None
        places = Places(dlq_topic, dead_letters, pool,
                        Spool(s.dead_letters.spool_dir, s.kafka.group_id),
                        s.postgres.connect_timeout_s)
        self._places = places
        self._lanes = [Lane(i, b, writer, self.book, s, self.breaker, places, self.stalls)
                       for i, b in enumerate(self._buffers)]
        drain = RebalanceDrain(self._buffers, self.book, self.checkpoint,
                               s.pipeline.rebalance_drain_timeout_s)
        source = KafkaSource(s, pool, store, self.book, drain, self.stalls)
        self._checkpointer = checkpointer = Checkpointer(pool, store, self.book, source.commit)
        self._backpressure = drain.backpressure = Backpressure(
            source.consumer, self._buffers, s, self.stalls)
        self._fetch = FetchLoop(source, self._queue, self.stopping, pace=self._pace,
                                idle=self._idle, request_stop=self.request_stop)
        backpressure = self._backpressure
        held = HeldPartitions(lambda tp: backpressure.hold(tp, REGISTRY_PART),
                              lambda tp: backpressure.release(tp, REGISTRY_PART))
        mirrors = self.mirrors
        columnar = columnar_plans(s, self.contracts, self.specs)
        decode = DecodeStage(
            Decoder(s, self.contracts, self.transforms, schema_book(s),
                    mirrors.evolving if mirrors else frozenset()),
            Router(self._buffers, frozenset(columnar)), self.stalls, held,
            self._new_columns if mirrors else None, columnar)
        observe = Observability(s, source, writer, pool, self.book, self._buffers, self.breaker,
                                self.stalls, self._heartbeat)
        try:
            if dlq_topic is not None:
                await self._unless_stopped(wait_for_kafka(
                    s, dlq_topic.start, "Kafka (dead-letter producer)", self._startup))
            await places.drain_once()  # what a previous run spooled goes first
            # Today's partitions and those ahead exist before the first batch, and expired
            # ones go, even for a run that ends before the first maintenance interval.
            await retry_transient(lambda: maintain(pool, self.specs.values()),
                                  "partition maintenance", operation="partitions",
                                  stalls=self.stalls)
            if s.kafka.group_instance_id is not None:
                # Before joining: a second live member with this id is refused here.
                self._claim = InstanceClaim(s, s.kafka.group_instance_id)
                await self._unless_stopped(wait_for_postgres(
                    s, self._claim.acquire, "PostgreSQL (static instance id)", self._startup))
            await self._unless_stopped(
                wait_for_kafka(s, source.start, "Kafka (consumer group)", self._startup))
            self._observe = observe
            self._probes.clear()
            self._probes.update(observe.probes)
            return await self._supervise(self._fetch, decode, checkpointer, until_caught_up,
                                         observe, pool)
        finally:
            # Leaving the group and flushing the dead-letter producer talk to Kafka: bounded,
            # so a broker mid-rebalance or away cannot hold the exit.
            if not await bounded(source.stop(), CLOSE_S):
                log.warning("the consumer did not leave the group in time; its session "
                            "timeout will", timeout_s=CLOSE_S)
            if dlq_topic is not None and not await bounded(dlq_topic.stop(), CLOSE_S):
                log.warning("the dead-letter producer did not close in time", timeout_s=CLOSE_S)
            if self._claim is not None:  # after leaving: the id is free for the next one
                await bounded(self._claim.release(), CLOSE_S)

    async def _supervise(self, fetch: FetchLoop, decode: DecodeStage, checkpointer: Checkpointer,
                         until: bool, observe: Observability, pool: asyncpg.Pool) -> int:
        s = self.settings
        started = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            fetching = tasks.create_task(fetch.run(until), name="fetch")
            decoding = tasks.create_task(decode.run(self._queue, self._pace), name="decode")
            writing = [tasks.create_task(lane.run(), name=f"lane-{lane.index}")
                       for lane in self._lanes]
            # Background tasks run until the pipeline is done, then are cancelled.
            background = [tasks.create_task(
                checkpointer.run(s.kafka.commit_interval_s), name="checkpoint")]
            background.append(tasks.create_task(maintain_forever(
                pool, list(self.specs.values()), s.postgres.partition_maintenance_s),
                name="partitions"))
            background.append(tasks.create_task(self._places.drain_forever(
                self.settings.dead_letters.spool_drain_interval_s), name="spool-drain"))
            background += [tasks.create_task(coro) for coro in observe.background()]
            if self._claim is not None:
                background.append(tasks.create_task(self._claim.keep(), name="instance-claim"))
            if self.mirrors is not None:
                background.append(tasks.create_task(self.mirrors.watch(self.request_reload),
                                                    name="mirrors-watch"))
            await self.stopping.wait()
            # The fetch loop is inside the deadline too: its final put can wait behind a
            # decode stage that waits behind lanes that wait on an unanswering database.
            stages = (fetching, decoding, *writing)
            # asyncio.wait, not wait_for: wait_for cancels the stages at the deadline and
            # then waits for them to finish cancelling, and a lane cancelled inside a
            # transaction sends ROLLBACK to a server that may never answer.
            _, late = await asyncio.wait(stages, timeout=self.settings.pipeline.shutdown_timeout_s)
            if late:
                log.error("shutdown deadline passed; abandoning uncommitted work, "
                          "the next owner replays it from the stored offsets",
                          deadline_s=self.settings.pipeline.shutdown_timeout_s)
                # Abort the connections first: a lane cancelled mid-query, or a graceful pool
                # close, would wait for a server that may never answer.
                pool.terminate()
                for task in (*background, *stages):
                    task.cancel()
                return EXIT_ABANDONED
            for task in background:
                task.cancel()
        # The final checkpoint is inside the deadline too: a Kafka commit can wait on a
        # rebalance that another member's exit started. The lanes' own offsets are already
        # stored, so abandoning it loses nothing.
        if not await bounded(self.checkpoint(), self.settings.pipeline.shutdown_timeout_s):
            log.error("shutdown deadline passed in the final checkpoint; the stored offsets "
                      "stand, the next owner resumes from them",
                      deadline_s=self.settings.pipeline.shutdown_timeout_s)
            pool.terminate()
            return EXIT_ABANDONED
        log.info("stopped cleanly", uptime_s=round(time.monotonic() - started, 1),
                 partitions=len(self.book.owned()), consumed=self.consumed)
        return EXIT_OK

    @property
    def consumed(self) -> int:
        """Records handed to the decode stage (a dropped fetch is not)."""
        return self._fetch.consumed if self._fetch is not None else 0

    def _pace(self) -> None:
        if self._backpressure is not None:
            self._backpressure.update()

    async def checkpoint(self, only: set[TopicPartitionKey] | None = None) -> None:
        """Persist advanced watermarks to PostgreSQL, then Kafka."""
        if self._checkpointer is not None:
            await self._checkpointer.checkpoint(only)

    def _idle(self) -> bool:
        return self._queue.empty() and all(
            b.rows == 0 and not lane.busy
            for b, lane in zip(self._buffers, self._lanes, strict=True)
        )
