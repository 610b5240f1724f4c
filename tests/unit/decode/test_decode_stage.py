"""The decode stage: one event the decoder cannot handle never stops the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processor.batch.buffer import LaneBuffer
from processor.core.errors import EventRejected
from processor.core.progress import ProgressBook
from processor.core.records import DeadLetter, Row
from processor.decode.debezium import ColumnsPending
from processor.decode.held import HeldPartitions
from processor.decode.stage import NEW_COLUMNS, DecodeStage
from processor.partition.router import Router


@dataclass
class Record:
    offset: int
    value: bytes
    topic: str = "orders"
    partition: int = 0
    timestamp: int = 0
    key: bytes | None = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Decoder:
    """Rows for every value but ``boom`` (a bug: RuntimeError) and ``bad`` (a rejection)."""

    def is_framed(self, topic: str) -> bool:
        return False

    def decode(self, topic: str, partition: int, offset: int, timestamp_ms: int,
               value: bytes, headers: Any = (), key: bytes | None = None
               ) -> tuple[str, tuple[Any, ...]]:
        if value == b"boom":
            raise RuntimeError("a path no test reached")
        if value == b"bad":
            raise EventRejected("decode_error", "decode", "not JSON")
        return "order", (offset,)


async def test_an_unexpected_decoder_error_dead_letters_that_event_only() -> None:
    buffer = LaneBuffer(100, 10**6)
    stage = DecodeStage(Decoder(), Router([buffer]))  # type: ignore[arg-type]
    progress = ProgressBook().assign(("orders", 0), None)
    records = [Record(0, b"{}"), Record(1, b"boom"), Record(2, b"bad"), Record(3, b"{}")]
    await stage.dispatch([(progress, records)])
    items = await buffer.take(100, 10**6, 0)
    assert [type(i) for i in items] == [Row, DeadLetter, DeadLetter, Row]
    boom = items[1]
    assert isinstance(boom, DeadLetter)
    assert boom.reason == "internal_error"
    assert boom.error == "RuntimeError: a path no test reached"
    assert boom.value == b"boom"  # kept whole, for a replay once fixed


class Evolving(Decoder):
    """A mirror's change with a field its table has not: ``new``."""

    def decode(self, topic: str, partition: int, offset: int, timestamp_ms: int,
               value: bytes, headers: Any = (), key: bytes | None = None
               ) -> tuple[str, tuple[Any, ...]]:
        if value == b"new":
            raise ColumnsPending("order", {"tier": {"field": "tier", "type": "string"}})
        return super().decode(topic, partition, offset, timestamp_ms, value, headers, key)


async def test_a_change_with_new_columns_holds_its_partition_until_the_restart() -> None:
    """The change and every later record of its partition wait, uncommitted (their chunk
    stays open), the pipeline is told the new field; the other partitions go on."""
    buffer = LaneBuffer(100, 10**6)
    told: list[tuple[str, dict[str, Any]]] = []
    held = HeldPartitions()
    stage = DecodeStage(Evolving(), Router([buffer]), held=held,  # type: ignore[arg-type]
                        new_columns=lambda et, fields: told.append((et, fields)))
    book = ProgressBook()
    p0, p1 = book.assign(("orders", 0), None), book.assign(("orders", 1), None)
    await stage.dispatch([(p0, [Record(0, b"{}"), Record(1, b"new"), Record(2, b"{}")]),
                          (p1, [Record(0, b"{}", partition=1)])])
    assert told == [("order", {"tier": {"field": "tier", "type": "string"}})]
    assert held.waiting() == [(("orders", 0), NEW_COLUMNS)]
    await stage.dispatch([(p0, [Record(3, b"{}")])])  # behind the held ones
    items = await buffer.take(100, 10**6, 0)
    assert [(i.chunk.tp, i.values) for i in items if isinstance(i, Row)] == [
        (("orders", 0), (0,)), (("orders", 1), (0,))]
    # Offset 0 written: the watermark stays below the held change, so nothing past it is
    # committed and the restart reads it again.
    [first] = [i for i in items if i.chunk.tp == ("orders", 0)]
    p0.mark_done(first.chunk, 1)
    assert p0.written_until == 0
