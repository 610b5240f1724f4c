"""The dead-letter fallback chain, through a real lane: topic, else table, else spool.

The topic and the database are fakes here (the integration tests use the real servers);
what is checked is the order of places and that a placed dead letter is never placed again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from processor.batch.buffer import LaneBuffer
from processor.core.errors import encoding_rows
from processor.core.progress import ProgressBook
from processor.core.records import Block, DeadLetter, Item, Row
from processor.core.row_layout import tail
from processor.core.settings import Settings, TopicSettings
from processor.core.stalls import Stalls
from processor.deadletter.places import Places
from processor.deadletter.spool import Spool
from processor.sink.breaker import CircuitBreaker
from processor.sink.lane import Lane

TP = ("orders", 0)


class FakeTopic:
    """Acknowledges the offsets in ``ok`` (all when None)."""

    def __init__(self, ok: set[int] | None = None, available: bool = True) -> None:
        self.ok = ok
        self.available = available
        self.published: list[int] = []

    async def publish(self, dead: Sequence[DeadLetter]) -> list[bool]:
        results = [self.ok is None or d.offset in self.ok for d in dead]
        self.published += [d.offset for d, ok in zip(dead, results, strict=True) if ok]
        return results


class FakeWriter:
    """Fails the first ``outages`` batch writes with a lost connection."""

    def __init__(self, outages: int = 0, table_down: bool = False,
                 outage: Exception | None = None) -> None:
        self.outage = outage or asyncpg.ConnectionDoesNotExistError("connection lost")
        self.outages = outages
        self.table_down = table_down
        self.committed: list[list[Any]] = []  # per commit: rows' values and table dead letters
        self.drained: list[int] = []

    async def write(self, writer: int, items: Sequence[Item],
                    marks: Mapping[Any, int]) -> None:
        if self.outages:
            self.outages -= 1
            raise self.outage
        self.committed.append(
            [i.values[0] if isinstance(i, Row) else f"dead:{i.offset}" for i in items
             if isinstance(i, Row) or i.place is None])

    async def write_alone(self, pool: object, dead: Sequence[DeadLetter],
                          timeout_s: float) -> None:
        if self.table_down:
            raise OSError("connection refused")
        self.drained += [d.offset for d in dead]


def settings() -> Settings:
    return Settings(event_types={}, topics=[TopicSettings(name="orders", type_field="type")])


def batch(book: ProgressBook) -> list[Item]:
    chunk = book.assign(TP, 0).open_chunk(0, 4, 4)
    dead = [DeadLetter(topic="orders", partition=0, offset=o, timestamp_ms=0, key=None,
                       value=b"x", headers=[], stage="decode", reason="decode_error",
                       error="bad", event_type=None, chunk=chunk) for o in (1, 3)]
    rows = [Row("order", (o, *tail(event_time=0, kafka_topic="orders", kafka_partition=0,
                                   kafka_offset=o, kafka_timestamp=0, raw=None)),
                chunk, 1, None, [], 0) for o in (0, 2)]
    return [rows[0], dead[0], rows[1], dead[1]]


async def run_lane(tmp_path: Path, topic: FakeTopic | None, writer: FakeWriter,
                   stalls: Stalls | None = None) -> tuple[list[Item], ProgressBook, Places]:
    book = ProgressBook()
    items = batch(book)
    places = Places(topic, writer, None, Spool(tmp_path, "g"), 1.0)  # type: ignore[arg-type]
    buffer = LaneBuffer(100, 10_000)
    lane = Lane(0, buffer, writer, book, settings(),  # type: ignore[arg-type]
                CircuitBreaker("t-fallbacks", 100, 0.01), places, stalls or Stalls(False, 0.01))
    await buffer.put(items, 4)
    await buffer.close()
    await lane.run()
    return items, book, places


def places_of(items: list[Item]) -> list[str | None]:
    return [i.place for i in items if isinstance(i, DeadLetter)]


async def test_the_topic_comes_first_and_the_transaction_carries_rows_only(
    tmp_path: Path,
) -> None:
    topic = FakeTopic()
    items, book, _ = await run_lane(tmp_path, topic, FakeWriter())
    assert topic.published == [1, 3]
    assert places_of(items) == ["topic", "topic"]
    assert book.get(TP).written_until == 4  # type: ignore[union-attr]


async def test_what_the_topic_does_not_acknowledge_goes_to_the_table_in_the_transaction(
    tmp_path: Path,
) -> None:
    writer = FakeWriter()
    with capture_logs() as logs:
        items, _, _ = await run_lane(tmp_path, FakeTopic(ok={1}), writer)
    assert places_of(items) == ["topic", "table"]
    assert writer.committed == [[0, 2, "dead:3"]]
    assert any("fall back to the table" in e["event"] for e in logs)


async def test_postgres_down_spools_them_once_and_the_retry_commits_rows_and_offsets(
    tmp_path: Path,
) -> None:
    writer = FakeWriter(outages=3)
    with capture_logs() as logs:
        items, book, places = await run_lane(tmp_path, FakeTopic(available=False), writer)
    assert places_of(items) == ["spool", "spool"]
    assert writer.committed == [[0, 2]]  # the dead letters are not written twice
    assert [e.dead.offset for e in await places.spool.entries()] == [1, 3]
    assert book.get(TP).written_until == 4  # type: ignore[union-attr]
    assert sum("fall back to the spool" in e["event"] for e in logs) == 1


async def test_without_a_topic_the_table_is_first(tmp_path: Path) -> None:
    writer = FakeWriter()
    items, _, _ = await run_lane(tmp_path, None, writer)
    assert places_of(items) == ["table", "table"]
    assert writer.committed == [[0, "dead:1", 2, "dead:3"]]


async def test_the_drain_moves_the_spool_to_the_topic_else_the_table_else_keeps_it(
    tmp_path: Path,
) -> None:
    _, _, places = await run_lane(tmp_path, FakeTopic(available=False),
                                  FakeWriter(outages=1))
    down = Places(FakeTopic(available=False), FakeWriter(table_down=True),  # type: ignore[arg-type]
                  None, places.spool, 1.0)
    with capture_logs():
        assert await down.drain() == 0
    assert len(await places.spool.entries()) == 2
    table = FakeWriter()
    assert await Places(FakeTopic(ok={3}), table, None, places.spool, 1.0).drain() == 2  # type: ignore[arg-type]
    assert table.drained == [1]  # the topic took 3
    assert await places.spool.entries() == []


async def test_a_dead_letter_the_table_refuses_is_spooled_and_its_offset_committed(
    tmp_path: Path,
) -> None:
    class RefusingWriter(FakeWriter):
        async def write(self, writer: int, items: Sequence[Item],
                        marks: Mapping[Any, int]) -> None:
            if any(isinstance(i, DeadLetter) and i.place is None for i in items):
                raise asyncpg.CheckViolationError("dead-letter table refuses it")
            await super().write(writer, items, marks)

    writer = RefusingWriter()
    with capture_logs():
        items, book, _ = await run_lane(tmp_path, None, writer)
    assert places_of(items) == ["spool", "spool"]
    assert book.get(TP).written_until == 4  # type: ignore[union-attr]
    assert sorted(v for c in writer.committed for v in c) == [0, 2]


@pytest.mark.parametrize("template", ["{topic}", "x.{topic}.dlq"])
def test_topic_names_come_from_the_template(template: str) -> None:
    s = Settings(event_types={}, topics=[TopicSettings(name="orders", type_field="type")],
                 dead_letters={"topic_template": template})
    assert s.dead_letters.topic_for("orders") == template.format(topic="orders")


def test_a_template_without_the_topic_is_refused() -> None:
    with pytest.raises(ValueError, match="must contain"):
        Settings(event_types={}, topics=[TopicSettings(name="orders", type_field="type")],
                 dead_letters={"topic_template": "all.dlq"})


async def test_one_entry_the_table_refuses_does_not_hold_back_the_others(
    tmp_path: Path,
) -> None:
    class PickyWriter(FakeWriter):
        async def write_alone(self, pool: object, dead: Sequence[DeadLetter],
                          timeout_s: float) -> None:
            if any(d.offset == 3 for d in dead):
                raise asyncpg.CheckViolationError("the table refuses this one")
            await super().write_alone(pool, dead, timeout_s)

    _, _, places = await run_lane(tmp_path, FakeTopic(available=False),
                                  FakeWriter(outages=1))
    picky = PickyWriter()
    with capture_logs():
        assert await Places(None, picky, None, places.spool, 1.0).drain() == 1  # type: ignore[arg-type]
    assert picky.drained == [1]
    assert [e.dead.offset for e in await places.spool.entries()] == [3]


async def test_a_revoked_privilege_stalls_the_lane_and_it_resumes_without_dead_letters(
    tmp_path: Path,
) -> None:
    denied = asyncpg.InsufficientPrivilegeError("permission denied for table orders")
    writer = FakeWriter(outages=3, outage=denied)
    seen: list[set[str]] = []

    class Watch(Stalls):
        def enter(self, part: str, exc: BaseException) -> None:
            super().enter(part, exc)
            seen.append(set(self.parts))

    stalls = Watch(False, 0.01)
    items, book, _ = await run_lane(tmp_path, None, writer, stalls)
    assert seen == [{"lane 0"}] * 3  # stalled on each refusal, never isolated row by row
    assert stalls.parts == {}  # over once the write went through
    # The rows, once; the dead letters were kept in the spool at the first refusal.
    assert writer.committed == [[0, 2]]
    assert places_of(items) == ["spool", "spool"]
    progress = book.get(TP)
    assert progress is not None
    assert progress.written_until == 4


async def test_with_on_stall_exit_a_revoked_privilege_stops_the_lane(tmp_path: Path) -> None:
    denied = asyncpg.InsufficientPrivilegeError("permission denied for table orders")
    writer = FakeWriter(outages=1, outage=denied)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await run_lane(tmp_path, None, writer, Stalls(True, 0.01))
    assert writer.committed == []


@pytest.mark.parametrize("bug", [
    AttributeError("'NoneType' object has no attribute 'values'"),
    TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
    ValueError("not enough values to unpack"),
])
async def test_a_bug_in_the_write_path_stalls_and_never_dead_letters_a_row(
    tmp_path: Path, bug: Exception,
) -> None:
    # A TypeError or ValueError is a row's data only when the COPY encoder raised it
    # (RowValueRefused); raised anywhere else on the write path it is Weir's bug.
    writer = FakeWriter(outages=2, outage=bug)
    reasons: list[str] = []

    class Watch(Stalls):
        def enter(self, part: str, exc: BaseException) -> None:
            super().enter(part, exc)
            reasons.append(self.parts[part].error)

    stalls = Watch(False, 0.01)
    items, _, _ = await run_lane(tmp_path, None, writer, stalls)
    assert len(reasons) == 2, reasons
    assert all(type(bug).__name__ in r for r in reasons), reasons
    assert writer.committed == [[0, 2]]  # both rows, once the write went through
    assert not any(isinstance(i, DeadLetter) and i.reason == "rejected_by_table"
                   for i in items)


async def test_a_value_the_copy_encoder_refuses_dead_letters_that_row_only(
    tmp_path: Path,
) -> None:
    class Picky(FakeWriter):
        async def write(self, writer: int, items: Sequence[Item],
                        marks: Mapping[Any, int]) -> None:
            if any(isinstance(i, Row) and i.values[0] == 2 for i in items):
                with encoding_rows():
                    raise OverflowError("value out of int64 range")
            await super().write(writer, items, marks)

    picky = Picky()
    await run_lane(tmp_path, None, picky)
    committed = [v for c in picky.committed for v in c]
    # Row 0 and the decode dead letters as before; row 2 as a dead letter, never as a row.
    assert sorted(map(str, committed)) == ["0", "dead:1", "dead:2", "dead:3"]


async def test_a_block_in_a_batch_to_bisect_is_turned_into_its_rows_first(
    tmp_path: Path,
) -> None:
    """The columnar path's block stands for rows 0 and 2: refused as a whole, it is
    expanded (the row path over its records) and only the refused row is dead-lettered;
    every event of the chunk is counted once."""
    class Picky(FakeWriter):
        async def write(self, writer: int, items: Sequence[Item],
                        marks: Mapping[Any, int]) -> None:
            if any(isinstance(i, Block) or (isinstance(i, Row) and i.values[0] == 2)
                   for i in items):
                with encoding_rows():
                    raise OverflowError("value out of int64 range")
            await super().write(writer, items, marks)

    book = ProgressBook()
    items = batch(book)
    rows = [i for i in items if isinstance(i, Row)]
    block = Block("order", None, rows[0].chunk, 2, 2, [0, 0], (0, 0), lambda: rows)
    dead = [i for i in items if isinstance(i, DeadLetter)]
    picky = Picky()
    places = Places(None, picky, None, Spool(tmp_path, "g"), 1.0)  # type: ignore[arg-type]
    buffer = LaneBuffer(100, 10_000)
    lane = Lane(0, buffer, picky, book, settings(),  # type: ignore[arg-type]
                CircuitBreaker("t-blocks", 100, 0.01), places, Stalls(False, 0.01))
    await buffer.put([block, *dead], 4)
    await buffer.close()
    await lane.run()
    committed = [v for c in picky.committed for v in c]
    assert sorted(map(str, committed)) == ["0", "dead:1", "dead:2", "dead:3"]
    assert book.get(TP).written_until == 4  # type: ignore[union-attr]
