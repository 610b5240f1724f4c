"""The dead-letter topic's record headers, written by the pipeline and read by `weir dlq`."""

from __future__ import annotations

from dataclasses import dataclass, field

from processor.core.records import Chunk, DeadLetter
from processor.deadletter.in_topic import parse
from processor.deadletter.topic import MAX_ERROR_HEADER, dead_letter_headers


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def dead(error: str = "CheckViolationError: amount_below_500") -> DeadLetter:
    return DeadLetter(
        topic="orders", partition=4, offset=1234, timestamp_ms=1_700_000_000_123,
        key=b"c-9", value=b'{"amount": 900}',
        headers=[("trace-id", b"abc"), ("weir-replay-of", b"orders/4/1000")],
        stage="sink", reason="rejected_by_table", error=error, event_type="order",
        chunk=Chunk(("orders", 4), 1234, 1235), attempts=12,
    )


def test_headers_carry_the_error_and_the_source_and_read_back_the_same() -> None:
    headers = dead_letter_headers(dead(), "weir")
    named = dict(headers)
    assert named["weir-error-class"] == b"rejected_by_table"
    assert named["weir-source-offset"] == b"1234"
    assert named["weir-attempts"] == b"12"
    assert named["trace-id"] == b"abc"  # the original headers are kept
    back = parse(Record(b"c-9", b'{"amount": 900}', headers), ("orders.dlq", 0, 7))
    assert back is not None
    assert back.coords == ("orders", 4, 1234)
    assert (back.reason, back.stage, back.event_type, back.group) == (
        "rejected_by_table", "sink", "order", "weir")
    assert back.error == "CheckViolationError: amount_below_500"
    assert back.kafka_timestamp_ms == 1_700_000_000_123
    assert back.headers == [("trace-id", b"abc"), ("weir-replay-of", b"orders/4/1000")]
    assert back.failed_at.tzinfo is not None


def test_a_dead_letter_published_again_gets_fresh_weir_headers_not_two_sets() -> None:
    again = dead()
    again.headers = dead_letter_headers(dead(), "weir")
    names = [k for k, _ in dead_letter_headers(again, "weir")]
    assert len(names) == len(set(names))
    assert "weir-replay-of" in names  # where a replayed event came from stays known


def test_a_huge_error_message_is_cut_so_the_record_stays_sendable() -> None:
    named = dict(dead_letter_headers(dead("x" * 100_000), "weir"))
    assert len(named["weir-error-message"]) == MAX_ERROR_HEADER


def test_binary_headers_and_a_message_quoting_nul_or_a_surrogate_round_trip() -> None:
    original = [("trace-bin", b"\x00\xff\x01"), ("k\x00ey \u2603", b"\xff"), ("none", None)]
    d = dead("ValueError: flagged a\x00b \udcff")
    d.headers = list(original)
    headers = dead_letter_headers(d, "weir")  # strict UTF-8 would raise on the surrogate
    assert headers[:3] == original
    back = parse(Record(b"c-9", b"{}", headers), ("orders.dlq", 0, 7))
    assert back is not None
    assert back.headers == original
    assert back.error == "ValueError: flagged a\x00b \\udcff"


def test_a_record_without_weir_headers_is_not_a_dead_letter() -> None:
    assert parse(Record(None, b"{}", [("trace-id", b"abc")]), ("orders.dlq", 0, 0)) is None


def test_dlq_filters_apply_to_topic_dead_letters_as_to_the_table() -> None:
    from datetime import UTC, datetime, timedelta

    from processor.commands.dlq import Filters

    back = parse(Record(b"k", b"{}", dead_letter_headers(dead(), "weir")), ("orders.dlq", 0, 0))
    assert back is not None
    past = datetime.now(UTC) - timedelta(hours=1)
    assert Filters(topic="orders", reason="rejected_by_table", since=past).matches(back)
    assert not Filters(topic="page_views").matches(back)
    assert not Filters(reason="decode_error").matches(back)
    assert not Filters(until=past).matches(back)
    assert Filters(since=past.replace(tzinfo=None)).matches(back)  # naive means UTC
