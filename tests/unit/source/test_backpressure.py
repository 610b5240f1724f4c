from pathlib import Path
from unittest.mock import create_autospec

from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.batch.buffer import LaneBuffer
from processor.core.records import Chunk, Item, Row
from processor.core.settings import Settings, load_settings
from processor.core.stalls import Stalls
from processor.source.backpressure import Backpressure


def settings(example_config: Path) -> Settings:
    base = load_settings(example_config)
    pipeline = base.pipeline.model_copy(update={"lane_capacity_rows": 10, "resume_ratio": 0.5})
    return base.model_copy(update={"pipeline": pipeline})


def items(tp: tuple[str, int], n: int) -> list[Item]:
    chunk = Chunk(tp, 0, n, n)
    return [Row("order", (), chunk, 1, None, [], 0) for _ in range(n)]


def consumer(assigned: set[TopicPartition]) -> AIOKafkaConsumer:
    fake = create_autospec(AIOKafkaConsumer, instance=True, spec_set=True)
    fake.assignment.return_value = assigned
    return fake


async def test_pauses_the_partitions_of_a_full_lane_and_resumes_after_draining(
    example_config: Path,
) -> None:
    a, b, c = ("t", 0), ("t", 1), ("t", 2)
    kafka = consumer({TopicPartition(*tp) for tp in (a, b, c)})
    lanes = [LaneBuffer(100, 10**6), LaneBuffer(100, 10**6)]
    pressure = Backpressure(kafka, lanes, settings(example_config), Stalls(False, 1.0))
    await lanes[0].put(items(a, 6) + items(b, 4), 10)
    await lanes[1].put(items(c, 3), 3)
    pressure.update()
    kafka.pause.assert_called_once_with(TopicPartition(*a), TopicPartition(*b))
    assert pressure.paused == {a, b}
    await lanes[0].take(4, 10**6, 0)  # 6 left: above the low-water mark of 5
    pressure.update()
    kafka.resume.assert_not_called()
    await lanes[0].take(2, 10**6, 0)  # 4 left
    pressure.update()
    resumed = set(kafka.resume.call_args.args)
    assert resumed == {TopicPartition(*a), TopicPartition(*b)}
    assert pressure.paused == set()


async def test_a_partition_held_by_two_full_lanes_waits_for_both(example_config: Path) -> None:
    a = ("t", 0)
    kafka = consumer({TopicPartition(*a)})
    lanes = [LaneBuffer(100, 10**6), LaneBuffer(100, 10**6)]
    pressure = Backpressure(kafka, lanes, settings(example_config), Stalls(False, 1.0))
    await lanes[0].put(items(a, 10), 10)
    await lanes[1].put(items(a, 10), 10)
    pressure.update()
    await lanes[0].take(10, 10**6, 0)
    pressure.update()
    kafka.resume.assert_not_called()
    await lanes[1].take(10, 10**6, 0)
    pressure.update()
    kafka.resume.assert_called_once_with(TopicPartition(*a))


async def test_revoked_partitions_are_forgotten_not_resumed(example_config: Path) -> None:
    a = ("t", 0)
    kafka = consumer({TopicPartition(*a)})
    lanes = [LaneBuffer(100, 10**6)]
    pressure = Backpressure(kafka, lanes, settings(example_config), Stalls(False, 1.0))
    await lanes[0].put(items(a, 10), 10)
    pressure.update()
    pressure.forget([a])
    kafka.assignment.return_value = set()
    await lanes[0].purge({a})
    pressure.update()
    kafka.resume.assert_not_called()
    assert pressure.paused == set()


async def test_a_stalled_lane_pauses_its_partitions_at_once_and_resumes_after(
    example_config: Path,
) -> None:
    a, b = ("t", 0), ("t", 1)
    kafka = consumer({TopicPartition(*a), TopicPartition(*b)})
    lanes = [LaneBuffer(100, 10**6), LaneBuffer(100, 10**6)]
    stalls = Stalls(False, 1.0)
    pressure = Backpressure(kafka, lanes, settings(example_config), stalls)
    await lanes[0].put(items(a, 1), 1)  # far below capacity
    await lanes[1].put(items(b, 1), 1)
    stalls.enter("lane 0", PermissionError("permission denied for table orders"))
    pressure.update()
    kafka.pause.assert_called_once_with(TopicPartition(*a))
    assert pressure.paused == {a}
    stalls.leave("lane 0")
    pressure.update()
    kafka.resume.assert_called_once_with(TopicPartition(*a))
    assert pressure.paused == set()
