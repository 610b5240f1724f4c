"""How a dead letter's headers and messages are stored: every byte kept, PostgreSQL satisfied.

Kafka header values are bytes (tracing headers are often binary), but PostgreSQL's jsonb and
text refuse NUL and want valid UTF-8. :func:`encode_headers` turns headers into a JSON array
of ``[key, value]`` pairs in which each key and each value is:

- a JSON string when its bytes are UTF-8 without NUL: exactly those bytes, as text, so a
  query reads ordinary headers as they are (``headers->0->>1``);
- ``{"base64": "..."}`` otherwise: the bytes, base64-encoded;
- ``null`` for a header without a value (Kafka allows it; aiokafka republishes it empty).

That array goes into the dead-letter table's ``headers`` jsonb (``headers_format`` =
:data:`HEADERS_FORMAT`) and into spool lines. Rows written before this format
(``headers_format`` = 1) hold a string per value, with bytes that were not UTF-8 replaced by
U+FFFD; :func:`decode_headers` reads both.

The original key and value stay in ``bytea`` columns; human text (the error, the event type)
goes to ``text`` columns through :func:`safe_text`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterable
from typing import Any, overload

import orjson

from processor.core.records import Header
from processor.core.text import printable

Stored = str | dict[str, str] | None  # one key or value, as it is stored

HEADERS_FORMAT = 2
LEGACY_HEADERS_FORMAT = 1  # what a table made by an earlier Weir holds, and its column default


def _store(data: bytes | None) -> Stored:
    if data is None:
        return None
    if b"\x00" not in data:
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-8")
    return {"base64": base64.b64encode(data).decode("ascii")}


def _load(item: object) -> bytes | None:
    if item is None or isinstance(item, str):
        return None if item is None else item.encode("utf-8")
    if isinstance(item, dict) and isinstance(item.get("base64"), str):
        try:
            return base64.b64decode(item["base64"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"stored header bytes are not base64: {exc}") from None
    raise TypeError(f"not a stored header key or value: {item!r}")


def encode_headers(headers: Iterable[Header]) -> list[list[Stored]]:
    """``headers`` as JSON-ready ``[key, value]`` pairs that PostgreSQL's jsonb accepts.

    A key is a ``str`` in aiokafka; its UTF-8 bytes are stored (``surrogatepass``: even a
    string no Kafka record can carry survives the trip).
    """
    return [[_store(key.encode("utf-8", "surrogatepass")), _store(value)]
            for key, value in headers]


def decode_headers(stored: Any) -> list[Header]:
    """The headers of :func:`encode_headers` (or of a format-1 row), byte for byte.

    ``stored`` is the decoded JSON array, or its JSON text. Raises ``ValueError`` or
    ``TypeError`` if it is neither.
    """
    pairs = orjson.loads(stored) if isinstance(stored, bytes | str) else stored
    if not isinstance(pairs, list):
        raise TypeError(f"stored headers are not a JSON array: {pairs!r}")
    headers: list[Header] = []
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise TypeError(f"a stored header is not a [key, value] pair: {pair!r}")
        key = _load(pair[0])
        if key is None:
            raise ValueError("a stored header has no key")
        headers.append((key.decode("utf-8", "surrogatepass"), _load(pair[1])))
    return headers


@overload
def safe_text(text: str) -> str: ...
@overload
def safe_text(text: None) -> None: ...


def safe_text(text: str | None) -> str | None:
    r"""``text`` as a PostgreSQL ``text`` column takes it (None stays None).

    A NUL becomes the four characters ``\x00`` and a lone surrogate its ``\udcxx`` escape:
    these columns hold messages for people (an exception may quote the event's bytes), and
    the bytes themselves are kept in ``key``, ``value`` and ``headers``.
    """
    return None if text is None else printable(text)
