"""Any dead letter is insertable: the table's arguments hold no NUL in text or jsonb, no
lone surrogate, and the headers read back byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from processor.core.records import Chunk, DeadLetter
from processor.core.settings import load_settings
from processor.deadletter.stored import (
    HEADERS_FORMAT,
    decode_headers,
    encode_headers,
    safe_text,
)
from processor.deadletter.table import DeadLetterTable

NASTY_HEADERS = [
    ("trace-bin", b"\x00\xff\x01"), ("k\x00ey \u2603\t\n", b"plain text"),
    ("traceparent", b"00-4bf92f3577b34da6-00f067aa0ba902b7-01"), ("no-value", None),
    ("empty", b""), ("latin-1", b"caf\xe9"), ("lone \udcff", b"\xed\xa0\x80"),
]


def nasty(error: str = "ValueError: refused 'a\x00b' \udcff", event_type: str | None = "or\x00der",
          ) -> DeadLetter:
    return DeadLetter(
        topic="orders", partition=3, offset=41, timestamp_ms=1_700_000_000_000,
        key=b"\x00\xff\xfe key", value=b"\x00\x01 not json", headers=list(NASTY_HEADERS),
        stage="transform", reason="transform_error", error=error, event_type=event_type,
        chunk=Chunk(("orders", 3), 41, 42),
    )


@pytest.fixture
def table(example_config: Path) -> DeadLetterTable:
    return DeadLetterTable(load_settings(example_config))


def test_args_match_the_statement_and_carry_the_format(table: DeadLetterTable) -> None:
    args = table.args(nasty())
    placeholders = set(re.findall(r"\$(\d+)", table.insert_sql))
    assert len(args) == len(placeholders) == 14
    assert args[8] == HEADERS_FORMAT


def test_text_args_hold_nothing_postgresql_text_refuses(table: DeadLetterTable) -> None:
    args = table.args(nasty())
    texts = [a for a in args if isinstance(a, str)]
    assert texts
    for text in texts:
        assert "\x00" not in text
        text.encode("utf-8")  # a lone surrogate would raise
    assert args[12] == "ValueError: refused 'a\\x00b' \\udcff"
    assert args[9] == "or\\x00der"


def test_bytes_go_whole_and_headers_read_back_exact(table: DeadLetterTable) -> None:
    args = table.args(nasty())
    assert (args[5], args[6]) == (b"\x00\xff\xfe key", b"\x00\x01 not json")
    assert b"\\u0000" not in args[7]  # jsonb refuses it
    assert decode_headers(args[7]) == NASTY_HEADERS


def test_a_dead_letter_without_event_type_stays_null(table: DeadLetterTable) -> None:
    assert table.args(nasty(event_type=None))[9] is None


def test_headers_are_readable_text_where_they_are_text() -> None:
    stored = encode_headers(NASTY_HEADERS)
    assert stored[0] == ["trace-bin", {"base64": "AP8B"}]
    assert stored[1][0] == {"base64": "awBleSDimIMJCg=="}  # a key with NUL
    assert stored[2] == ["traceparent", "00-4bf92f3577b34da6-00f067aa0ba902b7-01"]
    assert stored[3] == ["no-value", None]
    assert stored[4] == ["empty", ""]


def test_rows_of_the_earlier_format_read_back_as_they_were_stored() -> None:
    # Format 1: every value a string, what could not be decoded already replaced.
    old = orjson.dumps([["trace", "caf\ufffd"], ["id", "abc"]])
    assert decode_headers(old) == [("trace", "caf\ufffd".encode()), ("id", b"abc")]


@pytest.mark.parametrize("bad", [b"{}", b"[[1, 2]]", b'[["k"]]', b'[[null, "v"]]',
                                 b'[["k", {"base64": "not base64!"}]]'])
def test_anything_else_is_refused(bad: bytes) -> None:
    with pytest.raises((ValueError, TypeError)):
        decode_headers(bad)


def test_safe_text_keeps_ordinary_text() -> None:
    assert safe_text("schema_violation: 'x' is not of type 'integer'") == (
        "schema_violation: 'x' is not of type 'integer'")
    assert safe_text(None) is None
