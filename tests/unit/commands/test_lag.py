from processor.commands.lag import PartitionLag, render, with_rates


def lag(stored: int | None, end: int = 1000, partition: int = 0) -> PartitionLag:
    return PartitionLag("orders", partition, end, stored, stored)


def test_rate_and_time_to_catch_up_from_two_samples() -> None:
    [now] = with_rates([lag(200)], [lag(400)], seconds=2.0)
    assert now.lag == 600
    assert now.rate == 100.0
    assert now.eta_s == 6.0


def test_a_partition_that_is_behind_and_not_moving_never_catches_up() -> None:
    [now] = with_rates([lag(400)], [lag(400)], seconds=2.0)
    assert now.rate == 0.0
    assert now.eta_s is None
    assert "never" in render([now])


def test_a_caught_up_partition_needs_no_time_and_unknown_offsets_count_from_zero() -> None:
    [done] = with_rates([lag(1000)], [lag(1000)], seconds=1.0)
    assert done.eta_s == 0.0
    assert lag(None).lag == 1000
    table = render([done, lag(None, partition=1)])
    assert table.splitlines()[-1].split()[1] == "1000"  # total lag
