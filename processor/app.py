"""Wiring: builds the stages, runs them as owned tasks, and shuts them down in order.

    source --(decode queue)--> decode --(lane buffers)--> lanes --> PostgreSQL
       ^                                                              |
       +------ watermarks: Kafka commit after the PostgreSQL commit --+

Shutdown order is the guarantee: stop fetching, decode what was fetched, let every lane
write what it holds, commit the watermarks to Kafka, then leave the group. Past the
deadline, uncommitted work is abandoned; PostgreSQL's offsets make the next owner replay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
import structlog

from processor.batch.buffer import LaneBuffer
from processor.checkpoint import Checkpointer
from processor.contracts import Contract
from processor.deadletter.places import Places
from processor.deadletter.spool import Spool
from processor.deadletter.topic import DeadLetterTopic
from processor.decode.decoder import Decoder
from processor.decode.stage import DecodeStage
from processor.observe.health import LoopHeartbeat, ReadinessProbe
from processor.observe.server import ObserveServer
from processor.observe.wiring import Observability
from processor.records import TopicPartitionKey
from processor.retry import Backoff, retry_transient
from processor.settings import Settings
from processor.sink.breaker import CircuitBreaker
from processor.sink.lane import Lane
from processor.sink.maintenance import maintain
from processor.sink.offsets import OffsetStore
from processor.sink.pool import create_pool
from processor.sink.tables import table_spec
from processor.sink.writer import BatchWriter
from processor.source.backpressure import Backpressure
from processor.source.consumer import KafkaSource
from processor.source.progress import ProgressBook
from processor.stalls import Stalls
from processor.startup import StartupState, check_tables, wait_for_kafka, wait_for_postgres
from processor.verdict import Verdict, verdict

T = TypeVar("T")
log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_ABANDONED = 3
CLOSE_S = 10.0  # for each client's close at exit


class _Stopped(Exception):
    """A stop was asked for while :meth:`Pipeline._unless_stopped` waited."""


async def bounded(work: Coroutine[Any, Any, Any], seconds: float) -> bool:
    """Run ``work`` for at most ``seconds``; False (and ``work`` cancelled) if it did not end.

    ``asyncio.wait``, not ``wait_for``: past the time the caller goes on at once instead of
    waiting for the cancellation to finish (a cancelled query's ROLLBACK may never end).
    Its error, if it ended with one, is raised.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        return False
    task.result()
    return True


def _retrieve(task: asyncio.Task[Any]) -> None:
    # An abandoned task's outcome is of no interest, but must be retrieved to stay quiet.
    if not task.cancelled():
        task.exception()


class Pipeline:
    """One Weir process: a consumer, a decode stage and K writer lanes."""

    def __init__(self, settings: Settings, contracts: dict[str, Contract]) -> None:
        self.settings = settings
        self.contracts = contracts
        self.specs = {name: table_spec(c, settings) for name, c in contracts.items()}
        self.book = ProgressBook()
        self.stopping = asyncio.Event()
        self._queue: asyncio.Queue[list[Any] | None] = asyncio.Queue(
            settings.pipeline.decode_queue_fetches
        )
        self._buffers = [
            LaneBuffer(settings.lane_hard_limit_rows, settings.lane_hard_limit_bytes)
            for _ in range(settings.pipeline.lanes)
        ]
        self._lanes: list[Lane] = []
        self._checkpointer: Checkpointer | None = None
        self._backpressure: Backpressure | None = None
        self.consumed = 0  # records handed to the decode stage (a dropped fetch is not)
        self.stalls = Stalls(settings.postgres.on_stall == "exit",
                             settings.postgres.stall_retry_max_s)
        self._startup = StartupState()
        self._heartbeat = LoopHeartbeat()
        # What /readyz asks: start-up's state until the pipeline runs, then the pipeline's.
        self._probes: dict[str, ReadinessProbe] = {"startup": self._startup.probe}
        self._observe: Observability | None = None

    def request_stop(self, reason: str) -> None:
        """Begin a graceful shutdown (signal handler, caught-up check)."""
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
        except _Stopped:
            return EXIT_OK  # stopped while start-up waited: nothing was consumed
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
        """``work``'s result; :class:`_Stopped` if a stop was asked for first (``work`` is
        cancelled)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            raise _Stopped
        return task.result()

    def _status(self) -> dict[str, Any]:
        if self._observe is not None:
            return self._observe.status()
        return {"ready": False, "time": time.time(), "partitions": [], "starting": True,
                "totals": {"lag": 0, "max_lag_seconds": 0.0, "written_per_s": 0.0,
                           "dead_letters": 0, "partitions": 0, "paused": 0}}

    async def _run_with(self, pool: asyncpg.Pool, until_caught_up: bool) -> int:
        s = self.settings
        store = OffsetStore(s)
        writer = BatchWriter(pool, s, self.specs, store)
        self.breaker = CircuitBreaker("postgres", s.postgres.breaker_failures,
                                      s.postgres.breaker_open_s)
        # One dead-letter producer per process, started below and stopped last.
        dlq_topic = DeadLetterTopic(s) if s.dead_letters.topic_enabled else None
        places = Places(dlq_topic, writer,
                        Spool(s.dead_letters.spool_dir, s.kafka.group_id),
                        s.postgres.connect_timeout_s)
        self._places = places
        self._lanes = [Lane(i, b, writer, self.book, s, self.breaker, places, self.stalls)
                       for i, b in enumerate(self._buffers)]
        source = KafkaSource(s, pool, store, self.book, self.drain, self.stalls)
        self._checkpointer = Checkpointer(pool, store, self.book, source)
        self._backpressure = Backpressure(source.consumer, self._buffers, s, self.stalls)
        decode = DecodeStage(Decoder(s, self.contracts), self._buffers)
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
            await self._unless_stopped(
                wait_for_kafka(s, source.start, "Kafka (consumer group)", self._startup))
            self._observe = observe
            self._probes.clear()
            self._probes.update(observe.probes)
            return await self._supervise(source, decode, until_caught_up, observe, pool)
        finally:
            # Leaving the group and flushing the dead-letter producer talk to Kafka: bounded,
            # so a broker mid-rebalance or away cannot hold the exit.
            if not await bounded(source.stop(), CLOSE_S):
                log.warning("the consumer did not leave the group in time; its session "
                            "timeout will", timeout_s=CLOSE_S)
            if dlq_topic is not None and not await bounded(dlq_topic.stop(), CLOSE_S):
                log.warning("the dead-letter producer did not close in time", timeout_s=CLOSE_S)

    async def _supervise(self, source: KafkaSource, decode: DecodeStage, until: bool,
                         observe: Observability, pool: asyncpg.Pool) -> int:
        started = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            fetching = tasks.create_task(self._fetch_loop(source, until), name="fetch")
            decoding = tasks.create_task(self._decode_loop(decode), name="decode")
            writing = [tasks.create_task(lane.run(), name=f"lane-{lane.index}")
                       for lane in self._lanes]
            # Background tasks run until the pipeline is done, then are cancelled.
            background = [tasks.create_task(self._checkpoint_loop(), name="checkpoint")]
            background.append(tasks.create_task(self._partition_loop(pool), name="partitions"))
            background.append(tasks.create_task(self._places.drain_forever(
                self.settings.dead_letters.spool_drain_interval_s), name="spool-drain"))
            background += [tasks.create_task(coro) for coro in observe.background()]
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

    async def _fetch_loop(self, source: KafkaSource, until_caught_up: bool) -> None:
        failures = 0
        while not self.stopping.is_set():
            self._pace()  # resumes partitions whose lanes drained since the last fetch
            try:
                fetched = await source.fetch()
                if not fetched and until_caught_up and self._idle() \
                        and await source.caught_up():
                    self.request_stop("caught up")
            except Exception as exc:  # noqa: BLE001 - the verdict decides; fatal re-raised
                failures = await self._fetch_failed(exc, failures)
                continue
            failures = 0
            if fetched:
                await self._put_fetch(fetched)
        await self._queue.put(None)

    async def _fetch_failed(self, exc: Exception, failures: int) -> int:
        """A fetch (or end-offsets lookup) failed: stop only on a fatal verdict, else wait."""
        answer = verdict(exc)
        if answer is Verdict.FATAL:
            raise exc
        wait = Backoff(0.2, 5.0).delay(failures)
        log.warning("fetch failed; trying again", error=f"{type(exc).__name__}: {exc}",
                    verdict=answer.value, retry_in_s=round(wait, 2))
        await asyncio.sleep(wait)
        return failures + 1

    async def _put_fetch(self, fetched: list[Any]) -> None:
        # Wait for room, but give up the wait when asked to stop: the records stay uncommitted.
        try:
            await self._unless_stopped(self._queue.put(fetched))
        except _Stopped:
            return
        self.consumed += sum(len(records) for _, records in fetched)

    async def _decode_loop(self, decode: DecodeStage) -> None:
        while (fetched := await self._queue.get()) is not None:
            await decode.dispatch(fetched)
            self._pace()  # pauses partitions whose lanes this fetch filled
        for buffer in self._buffers:
            await buffer.close()

    def _pace(self) -> None:
        if self._backpressure is not None:
            self._backpressure.update()

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.kafka.commit_interval_s)
            await self.checkpoint()

    async def _partition_loop(self, pool: asyncpg.Pool) -> None:
        while True:
            await asyncio.sleep(self.settings.postgres.partition_maintenance_s)
            try:
                await maintain(pool, self.specs.values())
            except Exception as exc:
                answer = verdict(exc)
                if answer is Verdict.FATAL:
                    raise
                # A busy table, a database away, a revoked privilege: the next pass tries
                # again, and the premade partitions ahead leave plenty of room until then.
                log.warning("partition maintenance failed; trying again next interval",
                            error=f"{type(exc).__name__}: {exc}", verdict=answer.value)

    async def checkpoint(self, only: set[TopicPartitionKey] | None = None) -> None:
        """Persist advanced watermarks to PostgreSQL, then Kafka."""
        if self._checkpointer is not None:
            await self._checkpointer.checkpoint(only)

    def _idle(self) -> bool:
        return self._queue.empty() and all(
            b.rows == 0 and not lane.busy
            for b, lane in zip(self._buffers, self._lanes, strict=True)
        )

    async def drain(self, tps: set[TopicPartitionKey]) -> None:
        """Before partitions move: write what is buffered for them, drop what cannot make it."""
        for buffer in self._buffers:
            await buffer.flush_now()
        deadline = time.monotonic() + self.settings.pipeline.rebalance_drain_timeout_s
        while time.monotonic() < deadline:
            pending = [tp for tp in tps if (p := self.book.get(tp)) is not None and not p.idle]
            if not pending:
                break
            await asyncio.sleep(0.02)
        dropped = 0
        for buffer in self._buffers:
            dropped += await buffer.purge(tps)
        if self._backpressure is not None:
            self._backpressure.forget(tps)
        if dropped:
            log.warning("abandoned buffered events of revoked partitions; the next owner "
                        "replays them", events=dropped)
        await self.checkpoint(only=tps)
