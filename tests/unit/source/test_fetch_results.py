"""aiokafka's dropped fetch results free their partition's bytes at once, without the
cyclic garbage collector (processor/source/fetch_results.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from processor.source.fetch_results import ClosingFetchResult, install

TP = TopicPartition("t", 0)


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees anything here."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def partition_records() -> Any:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=10**6)
    for i in range(100):
        builder.append(i, timestamp=None, key=None, value=b"x" * 100, headers=[])
    return fetcher.PartitionRecords(TP, MemoryRecords(bytes(builder.build())), [], 0,
                                    None, None, False, fetcher.READ_UNCOMMITTED)


def assignment(paused: bool, position: int) -> Any:
    state = SimpleNamespace(paused=paused, position=position,
                            consumed_to=lambda offset: None)
    return SimpleNamespace(active=True, state_value=lambda tp: state)


@pytest.mark.usefixtures("no_collector")
def test_records_of_a_partition_paused_midway_are_freed_at_once() -> None:
    records = partition_records()
    result = ClosingFetchResult(TP, assignment=assignment(False, 0),
                                partition_records=records, backoff=0)
    assert len(result.getall(max_records=10)) == 10  # read midway: its generator holds it
    gone = weakref.ref(records)
    del records
    result._assignment = assignment(True, 10)  # backpressure paused the partition
    assert result.getall(max_records=10) == []
    assert gone() is None


@pytest.mark.usefixtures("no_collector")
def test_records_of_a_result_deleted_midway_are_freed_at_once() -> None:
    """A seek or a revocation deletes the result itself."""
    records = partition_records()
    result = ClosingFetchResult(TP, assignment=assignment(False, 0),
                                partition_records=records, backoff=0)
    result.getall(max_records=10)
    gone = weakref.ref(records)
    del records, result
    assert gone() is None


@pytest.mark.usefixtures("no_collector")
def test_aiokafka_alone_keeps_them_until_a_collection() -> None:
    """Why the subclass exists: aiokafka's own result leaves the cycle to the collector."""
    records = partition_records()
    aiokafkas = ClosingFetchResult.__bases__[0]
    result = aiokafkas(TP, assignment=assignment(False, 0), partition_records=records,
                       backoff=0)
    result.getall(max_records=10)
    gone = weakref.ref(records)
    del records, result
    assert gone() is not None
    gc.collect()
    assert gone() is None


def test_install_makes_aiokafka_build_them() -> None:
    install()
    install()
    assert fetcher.FetchResult is ClosingFetchResult
    assert ClosingFetchResult.__bases__[0].__module__ == "aiokafka.consumer.fetcher"
