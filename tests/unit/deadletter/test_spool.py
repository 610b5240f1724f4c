"""The spool: durable appends, draining that keeps what could not be placed, torn lines."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from processor.core.records import Chunk, DeadLetter
from processor.deadletter.spool import Spool, from_line, to_line


def dead(offset: int, value: bytes | None = b'{"a": 1}') -> DeadLetter:
    return DeadLetter(
        topic="orders", partition=2, offset=offset, timestamp_ms=1_700_000_000_000,
        key=b"c-1", value=value, headers=[("trace", b"\x00\xff")], stage="decode",
        reason="decode_error", error="JSONDecodeError: bad", event_type=None,
        chunk=Chunk(("orders", 2), offset, offset + 1), attempts=3,
    )


def test_a_line_round_trips_every_field_bytes_included() -> None:
    back = from_line(to_line(dead(7, b"\xff\xfe not utf-8")).rstrip(b"\n"))
    assert (back.topic, back.partition, back.offset, back.key, back.value) == (
        "orders", 2, 7, b"c-1", b"\xff\xfe not utf-8")
    assert back.headers == [("trace", b"\x00\xff")]
    assert (back.reason, back.stage, back.attempts, back.place) == (
        "decode_error", "decode", 3, "spool")


async def test_appends_survive_a_new_spool_object_and_are_fsynced_lines(tmp_path: Path) -> None:
    await Spool(tmp_path, "g").append([dead(1), dead(2, None)])
    await Spool(tmp_path, "g").append([dead(3)])
    entries = await Spool(tmp_path, "g").entries()  # as a restarted process sees them
    assert [e.dead.offset for e in entries] == [1, 2, 3]
    assert entries[1].dead.value is None
    assert (tmp_path / "g.jsonl").read_bytes().count(b"\n") == 3


async def test_drain_keeps_only_what_was_not_placed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "g")
    await spool.append([dead(1), dead(2), dead(3)])
    async with spool.drain() as (entries, keeper):
        keeper.keep(e for e in entries if e.dead.offset == 2)
    assert [e.dead.offset for e in await spool.entries()] == [2]
    async with spool.drain() as (entries, keeper):
        pass  # everything placed
    assert await spool.entries() == []
    assert (tmp_path / "g.jsonl").read_bytes() == b""


async def test_a_torn_last_line_is_skipped_with_a_warning_and_later_appends_stay_whole(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, "g")
    await spool.append([dead(1)])
    with spool.path.open("ab") as f:  # a crash in the middle of an append
        f.write(to_line(dead(2))[:25])
    with capture_logs() as logs:
        entries = await spool.entries()
    assert [e.dead.offset for e in entries] == [1]
    assert any("torn" in entry["event"] for entry in logs)
    await spool.append([dead(3)])
    with capture_logs():
        assert [e.dead.offset for e in await spool.entries()] == [1, 3]


async def test_a_group_name_cannot_escape_the_folder(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "../../etc/group one")
    await spool.append([dead(1)])
    assert spool.path.parent == tmp_path
    assert spool.path.name == ".._.._etc_group_one.jsonl"


async def test_draining_an_empty_spool_creates_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "never", "g")
    async with spool.drain() as (entries, _):
        assert entries == []
    assert not (tmp_path / "never").exists()


NASTY_HEADERS = [("trace-bin", b"\x00\xff\x01"), ("k\x00ey \u2603", b"text"), ("none", None)]


def test_binary_headers_and_keys_round_trip_byte_for_byte() -> None:
    d = dead(8)
    d.headers = list(NASTY_HEADERS)
    d.key = b"\x00\xff\xfe"
    back = from_line(to_line(d).rstrip(b"\n"))
    assert back.headers == NASTY_HEADERS
    assert back.key == b"\x00\xff\xfe"


def test_an_error_the_table_would_refuse_is_spooled_safe() -> None:
    d = dead(9)
    d.error = "ValueError: 'a\x00b' \udcff"  # orjson alone refuses the lone surrogate
    assert from_line(to_line(d).rstrip(b"\n")).error == "ValueError: 'a\\x00b' \\udcff"


def test_a_line_spooled_by_the_earlier_version_still_reads() -> None:
    # Before headers_format, every header value was base64 and a line had no spool time.
    line = (b'{"topic":"orders","partition":2,"offset":5,"timestamp_ms":1,"key":"YzE=",'
            b'"value":null,"headers":[["trace","AP8="]],"stage":"decode",'
            b'"reason":"decode_error","error":"bad","event_type":null,"attempts":1}')
    back = from_line(line)
    assert back.headers == [("trace", b"\x00\xff")]
    assert (back.key, back.value) == (b"c1", None)


async def test_peek_reads_without_the_lock_and_leaves_out_an_append_in_progress(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, "g")
    await spool.append([dead(1), dead(2)])
    (tmp_path / "g.lock").unlink()
    with spool.path.open("ab") as f:
        f.write(to_line(dead(3))[:30])  # another process mid-append
    entries = Spool(tmp_path, "g").peek()
    assert [e.dead.offset for e in entries] == [1, 2]
    assert all(e.spooled_at is not None for e in entries)
    assert not (tmp_path / "g.lock").exists()  # nothing written to look


def test_peek_at_no_spool_creates_nothing(tmp_path: Path) -> None:
    assert Spool(tmp_path / "never", "g").peek() == []
    assert not (tmp_path / "never").exists()
