from collections import Counter

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
