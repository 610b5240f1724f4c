"""Held partitions: a record whose schema the registry does not give waits, in order, with
every later record of its partition; other partitions flow; the partition resumes after."""

from __future__ import annotations

import asyncio
from typing import Any

from processor.core.progress import ProgressBook
from processor.core.records import Item, Row
from processor.decode.framed import SchemaPending
from processor.decode.held import HeldPartitions
from processor.decode.stage import DecodeStage
from tests.unit.decode.test_decode_stage import Record


class Decoder:
    """``new`` values name schema id 7, which the registry gives once ``up`` is set."""

    def __init__(self) -> None:
        self.registry = asyncio.Event()
        self.known: set[int] = set()
        self.asked = 0

    @property
    def up(self) -> bool:
        return self.registry.is_set()

    @up.setter
    def up(self, value: bool) -> None:
        if value:
            self.registry.set()

    def is_framed(self, topic: str) -> bool:
        return True

    def decode_framed(self, topic: str, partition: int, offset: int, timestamp_ms: int,
                      value: bytes, headers: Any = (), key: bytes | None = None
                      ) -> tuple[str, tuple[Any, ...]]:
        if value == b"new" and 7 not in self.known:
            raise SchemaPending(7)
        return "order", (partition, offset, b"{}")  # the row's tail ends with raw

    async def attempt_schema(self, schema_id: int, stalls: Any) -> bool:
        self.asked += 1
        if self.up:
            self.known.add(schema_id)
        return self.up

    async def fetch_schema(self, schema_id: int, stalls: Any) -> None:
        await self.registry.wait()
        self.known.add(schema_id)


class Output:
    def __init__(self) -> None:
        self.items: list[Item] = []

    async def put(self, items: list[Item]) -> None:
        self.items.extend(items)

    async def close(self) -> None:
        return


def coordinates(items: list[Item]) -> list[tuple[int, int]]:
    return [row.values[:2] for row in items if isinstance(row, Row)]


async def test_a_held_partition_waits_in_order_while_others_flow() -> None:
    decoder, output = Decoder(), Output()
    paused: list[tuple[str, Any]] = []
    held = HeldPartitions(lambda tp: paused.append(("hold", tp)),
                          lambda tp: paused.append(("release", tp)))
    stage = DecodeStage(decoder, output, held=held)  # type: ignore[arg-type]
    book = ProgressBook()
    p0, p1 = book.assign(("orders", 0), None), book.assign(("orders", 1), None)
    fetches: asyncio.Queue[Any] = asyncio.Queue()
    running = asyncio.create_task(stage.run(fetches))
    await fetches.put([(p0, [Record(0, b"old"), Record(1, b"new"), Record(2, b"old")]),
                       (p1, [Record(0, b"old", partition=1)])])
    await fetches.put([(p0, [Record(3, b"old")]), (p1, [Record(1, b"old", partition=1)])])
    for _ in range(50):
        await asyncio.sleep(0.01)
    # Partition 0 up to its first new-id record, and all of partition 1, went on.
    assert coordinates(output.items) == [(0, 0), (1, 0), (1, 1)]
    assert paused == [("hold", ("orders", 0))]
    assert decoder.asked == 1  # one try per fetch, then the stage's own task waits
    decoder.up = True
    for _ in range(50):
        await asyncio.sleep(0.01)
    # Then the held records, in offset order, and the partition is fetched again.
    assert coordinates(output.items) == [(0, 0), (1, 0), (1, 1), (0, 1), (0, 2), (0, 3)]
    assert paused == [("hold", ("orders", 0)), ("release", ("orders", 0))]
    assert ("orders", 0) not in held
    await fetches.put(None)
    await asyncio.wait_for(running, 5)


async def test_a_revoked_held_partition_is_dropped_for_its_next_owner() -> None:
    decoder, output = Decoder(), Output()
    held = HeldPartitions()
    stage = DecodeStage(decoder, output, held=held)  # type: ignore[arg-type]
    book = ProgressBook()
    p0 = book.assign(("orders", 0), None)
    await stage.dispatch([(p0, [Record(0, b"new"), Record(1, b"old")])])
    assert ("orders", 0) in held
    book.revoke({("orders", 0)})
    assert not held.prune(("orders", 0))
    # A new owner's progress of the same partition decodes from where it is told.
    p0 = book.assign(("orders", 0), None)
    decoder.up = True
    await stage.dispatch([(p0, [Record(0, b"new"), Record(1, b"old")])])
    assert coordinates(output.items) == [(0, 0), (0, 1)]
