"""Dead-letter headers survive storage byte for byte, and what is stored is what PostgreSQL
takes: jsonb without NUL, text without NUL or lone surrogates."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.deadletter.stored import decode_headers, encode_headers, safe_text

# Every code point, surrogates and NUL included: aiokafka keys are str, and a str may hold them.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
header_values = st.none() | st.binary(max_size=40) | any_text.map(
    lambda s: s.encode("utf-8", "surrogatepass"))
headers = st.lists(st.tuples(any_text, header_values), max_size=8)


def jsonb_takes(text: bytes) -> bool:
    """PostgreSQL's jsonb refuses a NUL in any string (written ``\\u0000``; an escaped
    backslash before ``u0000`` is no NUL); orjson refuses lone surrogates itself."""
    def clean(value: object) -> bool:
        if isinstance(value, str):
            return "\x00" not in value
        if isinstance(value, list):
            return all(clean(v) for v in value)
        if isinstance(value, dict):
            return all(clean(k) and clean(v) for k, v in value.items())
        return True
    return clean(orjson.loads(text))


@settings(max_examples=500, deadline=None)
@given(headers)
def test_headers_round_trip_through_json_text(original: list[tuple[str, bytes | None]]) -> None:
    text = orjson.dumps(encode_headers(original))
    assert jsonb_takes(text)
    assert decode_headers(text) == original
    assert decode_headers(orjson.loads(text)) == original


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=10).filter(lambda s: "\x00" not in s),
                          st.text(max_size=20).filter(lambda s: "\x00" not in s))))
def test_text_headers_stay_readable_strings(pairs: list[tuple[str, str]]) -> None:
    stored = encode_headers([(k, v.encode()) for k, v in pairs])
    assert stored == [[k, v] for k, v in pairs]


@settings(max_examples=500, deadline=None)
@given(any_text)
def test_safe_text_is_valid_utf8_without_nul(text: str) -> None:
    safe = safe_text(text)
    assert "\x00" not in safe
    safe.encode("utf-8")  # raises on a lone surrogate
    if "\x00" not in text and "\\" not in text:
        assert safe == text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
