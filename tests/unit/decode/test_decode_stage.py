"""The decode stage: one event the decoder cannot handle never stops the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processor.batch.buffer import LaneBuffer
from processor.core.errors import EventRejected
from processor.core.progress import ProgressBook
from processor.core.records import DeadLetter, Row
from processor.decode.stage import DecodeStage
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
