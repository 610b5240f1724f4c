import asyncio
import time

import pytest

from processor.batch.buffer import LaneBuffer
from processor.core.records import Chunk, Item, Row


def rows(n: int, size: int = 10, tp: tuple[str, int] = ("t", 0)) -> list[Item]:
    chunk = Chunk(tp, 0, n, n)
    return [Row("e", (i,), chunk, size, None, [], 0) for i in range(n)]


async def test_flushes_at_max_rows_without_lingering() -> None:
    buffer = LaneBuffer(1000, 10**6)
    await buffer.put(rows(25), 250)
    started = time.monotonic()
    batch = await buffer.take(max_rows=10, max_bytes=10**6, linger_s=5)
    assert len(batch) == 10
    assert time.monotonic() - started < 1
    assert buffer.rows == 15


async def test_flushes_at_max_bytes() -> None:
    buffer = LaneBuffer(1000, 10**6)
    await buffer.put(rows(10, size=100), 1000)
    batch = await buffer.take(max_rows=100, max_bytes=350, linger_s=5)
    assert len(batch) == 3  # a fourth would pass 350 bytes
    assert buffer.nbytes == 700


async def test_lingers_then_flushes_a_small_batch() -> None:
    buffer = LaneBuffer(1000, 10**6)
    await buffer.put(rows(3), 30)
    started = time.monotonic()
    batch = await buffer.take(max_rows=100, max_bytes=10**6, linger_s=0.2)
    waited = time.monotonic() - started
    assert len(batch) == 3
    assert waited >= 0.15


async def test_put_waits_while_full_and_resumes_when_drained() -> None:
    buffer = LaneBuffer(capacity_rows=10, capacity_bytes=10**6)
    await buffer.put(rows(10), 100)
    blocked = asyncio.create_task(buffer.put(rows(5), 50))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    await buffer.take(max_rows=10, max_bytes=10**6, linger_s=0)
    await asyncio.wait_for(blocked, 1)
    assert buffer.rows == 5


async def test_empty_buffer_accepts_an_oversized_put() -> None:
    buffer = LaneBuffer(capacity_rows=2, capacity_bytes=10)
    await asyncio.wait_for(buffer.put(rows(5, size=100), 500), 1)
    assert buffer.rows == 5


async def test_close_drains_then_returns_empty() -> None:
    buffer = LaneBuffer(100, 10**6)
    await buffer.put(rows(3), 30)
    await buffer.close()
    assert len(await buffer.take(10, 10**6, linger_s=5)) == 3
    assert await buffer.take(10, 10**6, linger_s=5) == []


async def test_purge_drops_only_revoked_partitions() -> None:
    buffer = LaneBuffer(100, 10**6)
    await buffer.put(rows(3, tp=("t", 0)) + rows(4, tp=("t", 1)), 70)
    assert await buffer.purge({("t", 0)}) == 3
    assert buffer.rows == 4
    assert buffer.nbytes == 40


@pytest.mark.parametrize("linger", [0.0, 0.05])
async def test_flush_now_skips_the_linger(linger: float) -> None:
    buffer = LaneBuffer(100, 10**6)
    await buffer.put(rows(2), 20)
    await buffer.flush_now()
    batch = await asyncio.wait_for(buffer.take(100, 10**6, linger_s=10 + linger), 1)
    assert len(batch) == 2


async def test_linger_counts_from_the_oldest_items_arrival() -> None:
    now = [100.0]
    buffer = LaneBuffer(1000, 10**6, clock=lambda: now[0])
    await buffer.put(rows(3), 30)
    now[0] += 0.5  # the lane was busy writing while these waited
    take = asyncio.create_task(buffer.take(max_rows=100, max_bytes=10**6, linger_s=0.2))
    for _ in range(3):
        await asyncio.sleep(0)
    assert take.done()  # no second linger on top of the wait
    assert len(take.result()) == 3


async def test_a_block_counts_as_its_rows_and_is_never_cut() -> None:
    from processor.core.records import Block, Chunk

    buffer = LaneBuffer(capacity_rows=1_000, capacity_bytes=1_000_000)
    chunk = Chunk(("t", 0), 0, 300)
    blocks = [Block("e", None, chunk, 150, 1_500, [0] * 150, (0, 0), list) for _ in range(2)]
    await buffer.put(blocks, 3_000)
    assert buffer.rows == 300
    first = await buffer.take(max_rows=100, max_bytes=1_000_000, linger_s=0)
    assert first == blocks[:1]  # more than max_rows, but a block is taken whole
    assert buffer.rows == 150
    assert await buffer.purge({("t", 0)}) == 150
    assert buffer.rows == 0
