"""The raw message as the ``raw`` jsonb column: what jsonb refuses of the JSON orjson reads.

Every row stores the original bytes in ``raw``, so JSON that orjson accepts but jsonb's input
refuses would fail the batch's COPY. orjson already refuses unpaired surrogate escapes,
numbers that overflow a double, invalid UTF-8, a byte order mark and nesting deeper than
1024. What it reads and jsonb does not is a ``\\u0000`` escape in any string or key: jsonb
holds text, and PostgreSQL's text holds no NUL. That is checked here, for the cost of one
memchr on the usual event (no backslash at all).

One more thing jsonb refuses is left to the sink on purpose: a number with more than 16383
digits after the decimal point, counting a negative exponent (``1e-16384``, which orjson
reads as 0.0). Finding one costs a scan of the bytes for ``e-`` that a UUID's hex digits
often trip (about 0.5 us per event, for a number no producer sends); PostgreSQL refuses it
as a data error, which the sink isolates by bisection and dead-letters as
``rejected_by_table``.
"""

from __future__ import annotations

from typing import Any

from processor.core.errors import EventRejected
from processor.decode.converters import BACKSLASH, NUL_ESCAPE, has_nul_escape, show


def check_raw(raw: bytes, event: dict[str, Any]) -> None:
    """Raise :class:`EventRejected` if jsonb would refuse ``raw`` (``event`` is its parse)."""
    # Every escape starts with a backslash, and most events have none: one memchr.
    if BACKSLASH in raw and NUL_ESCAPE in raw and has_nul_escape(raw):
        raise EventRejected(
            "conversion_error", "decode",
            f"{nul_place(event)} holds a NUL character (\\u0000), which PostgreSQL text and "
            "jsonb cannot store",
        )


def nul_place(event: dict[str, Any]) -> str:
    """Where the first NUL of a decoded event is: ``field 'a.b[2]'``, or ``a key (...) in``
    a field or the top-level object."""
    stack: list[tuple[Any, str]] = [(event, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
            for key in node:
                if "\x00" in key:
                    return f"a key ({show(key)}) in {_field(path)}"
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for step, child in items:
            where = f"{path}[{step}]" if isinstance(node, list) else _join(path, step)
            if isinstance(child, str) and "\x00" in child:
                return f"field {where!r}"
            stack.append((child, where))
    return "a string"  # not reached for a parse of bytes that hold the escape


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field(path: str) -> str:
    return f"field {path!r}" if path else "the top-level object"
