"""The revocation hook's logic: flush, wait (bounded) for the moving partitions, drop what is
still buffered for them (the next owner replays it), checkpoint those partitions."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from processor.batch.buffer import LaneBuffer
from processor.core.progress import ProgressBook
from processor.core.records import Item, Row, TopicPartitionKey
from processor.runtime.rebalance import RebalanceDrain

MOVING: TopicPartitionKey = ("orders", 0)
STAYING: TopicPartitionKey = ("orders", 1)


async def test_what_cannot_be_written_in_time_is_dropped_and_the_rest_kept() -> None:
    book = ProgressBook()
    buffer = LaneBuffer(100, 1_000_000)
    rows: list[Item] = []
    for tp in (MOVING, STAYING):
        chunk = book.assign(tp, 0).open_chunk(0, 3, 3)
        rows += [Row("order", (i,), chunk, 10, None, [], 0) for i in range(3)]
    await buffer.put(rows, 60)
    checkpointed: list[set[TopicPartitionKey]] = []

    async def checkpoint(tps: set[TopicPartitionKey]) -> None:
        checkpointed.append(set(tps))

    drain = RebalanceDrain([buffer], book, checkpoint, timeout_s=0.05)
    with capture_logs() as logs:
        await drain({MOVING})  # no lane runs: nothing gets written in time
    assert buffer.rows == 3
    assert buffer.partitions() == {STAYING}  # the staying partition's rows are kept
    assert [e.get("events") for e in logs if e["event"].startswith("abandoned")] == [3]
    assert checkpointed == [{MOVING}]


async def test_a_partition_written_in_time_is_checkpointed_without_dropping() -> None:
    book = ProgressBook()
    progress = book.assign(MOVING, 0)
    chunk = progress.open_chunk(0, 2, 2)
    checkpointed: list[set[TopicPartitionKey]] = []

    async def checkpoint(tps: set[TopicPartitionKey]) -> None:
        moving = book.get(MOVING)
        assert moving is not None
        assert moving.idle  # written before the checkpoint
        checkpointed.append(set(tps))

    async def lane_writes_it() -> None:
        await asyncio.sleep(0.02)
        progress.mark_done(chunk, 2)

    drain = RebalanceDrain([LaneBuffer(10, 1000)], book, checkpoint, timeout_s=5)
    writing = asyncio.ensure_future(lane_writes_it())
    with capture_logs() as logs:
        await asyncio.wait_for(drain({MOVING}), 2)  # well before its 5 s bound
    await writing
    assert not [e for e in logs if e["event"].startswith("abandoned")]
    assert checkpointed == [{MOVING}]
