"""The checkpointer's logic, with a fake pool and store: what it saves, when it commits to
Kafka, and what a failed save means (the verdict's)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import AuthenticationFailedError
from structlog.testing import capture_logs

from processor.core.progress import ProgressBook
from processor.core.records import TopicPartitionKey
from processor.runtime.checkpoint import CHECKPOINT_WRITER, Checkpointer

A: TopicPartitionKey = ("orders", 0)
B: TopicPartitionKey = ("orders", 1)


class FakeConn:
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class FakePool:
    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        yield FakeConn()


class FakeStore:
    """Records each save; fails with the errors queued in ``failures`` first."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, dict[TopicPartitionKey, int]]] = []
        self.failures: list[Exception] = []

    async def save(self, conn: Any, writer: int, marks: dict[TopicPartitionKey, int]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.saved.append((writer, dict(marks)))


def written(book: ProgressBook, tp: TopicPartitionKey, first: int, end: int) -> None:
    """``first`` to ``end - 1`` of ``tp`` fetched and written."""
    progress = book.get(tp) or book.assign(tp, first)
    chunk = progress.open_chunk(first, end, end - first)
    progress.mark_done(chunk, end - first)


def checkpointer() -> tuple[Checkpointer, FakeStore, ProgressBook, list[Any]]:
    book, store, commits = ProgressBook(), FakeStore(), []

    async def commit(only: set[TopicPartitionKey] | None) -> None:
        commits.append(only)

    return Checkpointer(FakePool(), store, book, commit), store, book, commits  # type: ignore[arg-type]


async def test_only_watermarks_that_advanced_are_saved_then_committed_to_kafka() -> None:
    cp, store, book, commits = checkpointer()
    written(book, A, 0, 10)
    written(book, B, 0, 5)
    await cp.checkpoint()
    written(book, A, 10, 12)
    await cp.checkpoint()
    await cp.checkpoint()  # nothing moved: nothing saved, Kafka asked again all the same
    assert store.saved == [(CHECKPOINT_WRITER, {A: 10, B: 5}), (CHECKPOINT_WRITER, {A: 12})]
    assert commits == [None, None, None]


async def test_a_revocation_checkpoints_only_the_partitions_that_move() -> None:
    cp, store, book, commits = checkpointer()
    written(book, A, 0, 10)
    written(book, B, 0, 5)
    await cp.checkpoint({B})
    assert store.saved == [(CHECKPOINT_WRITER, {B: 5})]
    assert commits == [{B}]


@pytest.mark.parametrize("failure", [
    asyncpg.ConnectionDoesNotExistError("connection lost"),          # retry
    asyncpg.InsufficientPrivilegeError("permission denied"),         # stall
])
async def test_a_failed_save_is_tried_again_next_time_and_kafka_not_ahead_of_it(
        failure: Exception) -> None:
    cp, store, book, commits = checkpointer()
    written(book, A, 0, 10)
    store.failures.append(failure)
    with capture_logs() as logs:
        await cp.checkpoint()
    assert [e["event"] for e in logs] == ["checkpoint failed; will retry"]
    assert commits == []  # Kafka never gets ahead of PostgreSQL
    await cp.checkpoint()
    assert store.saved == [(CHECKPOINT_WRITER, {A: 10})]
    assert commits == [None]


async def test_a_fatal_failure_is_raised() -> None:
    cp, store, book, _ = checkpointer()
    written(book, A, 0, 10)
    store.failures.append(AuthenticationFailedError())
    with pytest.raises(AuthenticationFailedError):
        await cp.checkpoint()
