"""The decode stage: fetched records in, rows and dead letters out to the partition stage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from processor import metrics
from processor.decode.decoder import Decoder
from processor.decode.framed import SchemaPending
from processor.errors import EventRejected
from processor.progress import PartitionProgress
from processor.records import Chunk, DeadLetter, Item, Row
from processor.stalls import Stalls

log = structlog.get_logger(__name__)


Fetch = list[tuple[PartitionProgress, list[Any]]]


class Output(Protocol):
    """Where decoded items go next (the partition stage's router)."""

    async def put(self, items: Sequence[Item]) -> None:
        """Take one fetch's items, in order; waits while a lane is full."""

    async def close(self) -> None:
        """No more items will come."""


class DecodeStage:
    """Decodes one fetch at a time and hands its items on, in order."""

    def __init__(self, decoder: Decoder, output: Output, stalls: Stalls | None = None) -> None:
        self._decoder = decoder
        self._output = output
        self._stalls = stalls  # where a wait for the schema registry is reported

    async def run(self, fetches: asyncio.Queue[Fetch | None],
                  after_each: Callable[[], None] | None = None) -> None:
        """The stage's loop: every fetch of ``fetches`` until ``None``, then close the output.

        ``after_each`` runs after each fetch is handed on (backpressure pauses the partitions
        whose lanes it filled).
        """
        while (fetched := await fetches.get()) is not None:
            await self.dispatch(fetched)
            if after_each is not None:
                after_each()
        await self._output.close()

    async def dispatch(self, fetched: Fetch) -> None:
        """Decode every record of one fetch and hand the items on (waits if a lane is full)."""
        items: list[Item] = []
        for progress, records in fetched:
            if progress.revoked:
                continue  # the partition moved while this fetch waited; its next owner replays
            start = progress.written_until
            fresh = records
            if start is not None and records[0].offset < start:
                fresh = [r for r in records if r.offset >= start]
                if not fresh:
                    continue
            chunk = progress.open_chunk(fresh[0].offset, fresh[-1].offset + 1, len(fresh),
                                        fresh[0].timestamp)
            filtered = 0
            framed = self._decoder.is_framed(chunk.tp[0])
            decode = self._decoder.decode_framed if framed else self._decoder.decode
            for rec in fresh:
                # The common case inline (a row); this loop runs once per event.
                value = rec.value
                decoded: tuple[str, tuple[Any, ...]] | DeadLetter | None
                try:
                    decoded = decode(rec.topic, rec.partition, rec.offset, rec.timestamp,
                                     value, rec.headers) if value is not None else \
                        self._decoder.tombstone(rec.topic, rec.partition, rec.offset,
                                                rec.timestamp, rec.key)
                except SchemaPending as pending:
                    # Not a fault of the event: fetch its schema (waiting while the registry
                    # is away, stalled), then decode it again.
                    await self._decoder.fetch_schema(pending.schema_id, self._stalls)
                    decoded = self._again(rec, chunk)
                except EventRejected as exc:
                    decoded = self._dead_letter(rec, chunk, exc)
                except Exception as exc:  # noqa: BLE001 - one event must never stop Weir
                    decoded = self._internal_error(rec, chunk, exc)
                if decoded is None:
                    filtered += 1
                    continue
                items.append(decoded if isinstance(decoded, DeadLetter) else Row(
                    decoded[0], decoded[1], chunk,
                    len(value) if value is not None else len(rec.key or b""),
                    rec.key, list(rec.headers), rec.timestamp, value is None, value))
            if filtered:
                metrics.EVENTS_FILTERED.labels(chunk.tp[0]).inc(filtered)
                progress.mark_done(chunk, filtered)
        if items:
            await self._output.put(items)

    def _again(self, rec: Any, chunk: Chunk) -> tuple[str, tuple[Any, ...]] | DeadLetter | None:
        """Decode a framed record whose schema was just fetched."""
        try:
            return self._decoder.decode_framed(rec.topic, rec.partition, rec.offset,
                                               rec.timestamp, rec.value, rec.headers)
        except EventRejected as exc:
            return self._dead_letter(rec, chunk, exc)
        except Exception as exc:  # noqa: BLE001 - one event must never stop Weir
            return self._internal_error(rec, chunk, exc)

    def _internal_error(self, rec: Any, chunk: Chunk, exc: Exception) -> DeadLetter:
        # A bug of ours met by one input (a decoder path no test reached): that event is a
        # dead letter saying so, the others go on.
        log.error("decoder failed on one event; it is dead-lettered",
                  topic=rec.topic, partition=rec.partition, offset=rec.offset,
                  error=f"{type(exc).__name__}: {exc}")
        return self._dead_letter(rec, chunk, EventRejected(
            "internal_error", "decode", f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def _dead_letter(rec: Any, chunk: Chunk, exc: EventRejected) -> DeadLetter:
        return DeadLetter(
            topic=rec.topic, partition=rec.partition, offset=rec.offset,
            timestamp_ms=rec.timestamp, key=rec.key, value=rec.value,
            headers=list(rec.headers), stage=exc.stage, reason=exc.reason, error=str(exc),
            event_type=None, chunk=chunk,
            nbytes=len(rec.value) if rec.value is not None else 0,
        )
