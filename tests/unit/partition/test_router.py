from collections import Counter

import pytest

from processor.partition.router import lane_for


def test_same_key_same_lane_every_time() -> None:
    lanes = {lane_for(b"customer-42", p, 4) for p in range(12)}
    assert len(lanes) == 1


def test_keys_spread_over_all_lanes() -> None:
    counts = Counter(lane_for(f"key-{i}".encode(), 0, 4) for i in range(10_000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 2000  # roughly even: 2,500 each


def test_keyless_events_follow_their_partition() -> None:
    assert [lane_for(None, p, 4) for p in range(6)] == [0, 1, 2, 3, 0, 1]


def test_one_lane_takes_everything() -> None:
    assert {lane_for(f"k{i}".encode(), i, 1) for i in range(100)} == {0}


async def test_the_router_gives_each_lane_its_share_in_order() -> None:
    from processor.batch.buffer import LaneBuffer
    from processor.core.records import Chunk, Row
    from processor.partition.router import Router

    buffers = [LaneBuffer(100, 10_000) for _ in range(3)]
    chunk = Chunk(("orders", 5), 0, 30)
    rows = [Row("order", (i,), chunk, 10, f"k{i % 7}".encode(), [], 0) for i in range(30)]
    await Router(buffers).put(rows)
    got = [await b.take(100, 10_000, 0) for b in buffers]
    for lane, items in enumerate(got):
        assert all(lane_for(r.key, 5, 3) == lane for r in items)
        assert [r.values for r in items] == sorted(r.values for r in items)  # kept in order
    assert sum(len(items) for items in got) == 30
    assert [b.nbytes for b in buffers] == [0, 0, 0]  # taken, byte counts included


@pytest.mark.parametrize("key", [None, b'{"id":0}'])
async def test_a_mirrors_truncate_goes_to_every_lane_in_its_order(key: bytes | None) -> None:
    """Keyed or not (Debezium sends none, another producer may): every lane's copy."""
    from processor.batch.buffer import LaneBuffer
    from processor.core.records import Chunk, Row
    from processor.partition.router import Router

    buffers = [LaneBuffer(100, 10_000) for _ in range(3)]
    chunk = Chunk(("src.public.products", 0), 0, 21, pending=21)
    rows = [Row("product", (i,), chunk, 10, f"k{i % 7}".encode(), [], 0) for i in range(20)]
    rows.insert(10, Row("product", (9.5,), chunk, 10, key, [], 0, truncate=True))
    await Router(buffers).put(rows)
    got = [await b.take(100, 10_000, 0) for b in buffers]
    for items in got:
        [where] = [i for i, r in enumerate(items) if r.truncate]
        # after the lane's older rows, before its newer ones
        assert all(r.values[0] < 9.5 for r in items[:where])
        assert all(r.values[0] > 9.5 for r in items[where + 1:])
    # The watermark passes the chunk once every lane wrote its copy.
    assert chunk.pending == 23


async def test_a_block_and_the_rest_of_its_topic_go_to_their_partitions_lane() -> None:
    from processor.batch.buffer import LaneBuffer
    from processor.core.records import Block, Chunk, Row
    from processor.partition.router import Router

    buffers = [LaneBuffer(1_000, 100_000) for _ in range(3)]
    chunk = Chunk(("orders", 4), 0, 120)
    block = Block("order", None, chunk, 100, 1_000, [0] * 100, (0, 0), list)
    rows = [Row("order", (i,), chunk, 10, f"k{i}".encode(), [], 0) for i in range(20)]
    other = Chunk(("views", 4), 0, 20)
    keyed = [Row("view", (i,), other, 10, f"k{i}".encode(), [], 0) for i in range(20)]
    await Router(buffers, frozenset({"orders"})).put([block, *rows, *keyed])
    lane = lane_for(None, 4, 3)
    assert buffers[lane].rows >= 120  # the block counts as its rows, with its topic's rows
    got = await buffers[lane].take(1_000, 100_000, 0)
    assert got[:21] == [block, *rows]
    assert {lane_for(r.key, 4, 3) for r in keyed} != {lane}  # another topic: by its keys
