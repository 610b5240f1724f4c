"""A row builder generated once per event type: the usual valid event's row in one call.

The decoder's generic ``_row`` loops over the columns twice (text checks, then converters)
and calls a converter per column; for an order that was 2.8 us, the largest cost of
decoding after validation. The builder generated here does the same work as straight-line
code: the columns' values in one C call (``map(event.get, names)``), the text columns
checked together (one join, one ``isascii``, one NUL search), and each column's usual
value converted inline (a ``str`` into asyncpg's ``UUID``, a finite ``float`` into its
shortest ``Decimal``, a date-time string into PostgreSQL's integer, a jsonb value into
exact-size bytes). Any other value goes through the column's own converter, as in ``_row``.

It is one-sided like the quick check: it returns exactly the row ``_row`` returns, or
raises *anything*, and the decoder then asks ``_row``, which builds the row or rejects the
event with today's reason and message (the field's name, what is wrong with the value).
``tests/property/test_fast_path.py`` holds both builders to the same rows and rejections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from asyncpg.pgproto.pgproto import UUID

from processor.core.pgtime import FIRST_US, LAST_US, PG_EPOCH, PG_EPOCH_MS, UTC_MILLIS
from processor.core.row_layout import tail_source
from processor.core.settings import MappedColumnSettings
from processor.core.text import SURROGATE
from processor.decode.converters import BACKSLASH, INT32, INT64, Converter, has_nul_escape
from processor.decode.mapped import AS_TEXT, EPOCH_UNITS, converted_default, value_converter

# (event, topic, partition, offset, timestamp_ms, raw[, key, headers]) -> the row
RowBuilder = Callable[..., tuple[Any, ...]]


class Unusual(Exception):
    """A value the generated code leaves to the generic builder (never escapes the decoder)."""


def _unusual() -> None:
    raise Unusual


def _ranged(low: int, high: int) -> str:
    return f"type({{v}}) is int and {low} <= {{v}} <= {high}"


# pg_type: (the usual value's test, its converted value); other values take the converter.
# Each pair is exactly what the type's converter in converters.py does for such a value.
_INLINE = {
    "uuid": ("type({v}) is str", "UUID({v})"),
    "bigint": (_ranged(*INT64), None),
    "integer": (_ranged(*INT32), None),
    "numeric": ("type({v}) is float and {v} - {v} == 0.0", "Decimal(repr({v}))"),
    "double precision": ("type({v}) is float and {v} - {v} == 0.0", None),
    "boolean": ("type({v}) is bool", None),
}
_TIMESTAMPTZ = """\
    if type({v}) is str:
        t = fromisoformat({v})
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        t -= PG_EPOCH  # the integer aware_micros gives, from the timedelta's own fields
        {v} = (t.days * 86400 + t.seconds) * 1000000 + t.microseconds
        if not FIRST_US <= {v} <= LAST_US:
            unusual()
    elif {v} is not None:
        {v} = {c}({v})"""
_JSONB = """\
    if {v} is not None:
        {v} = bytes(memoryview(dumps({v})))
        if BACKSLASH in {v} and has_nul_escape({v}):
            unusual()"""
_TEXTS = """\
    if not ({types}):
        unusual()
    t = "".join(({joined},))
    if "\\x00" in t or not t.isascii() and SURROGATE.search(t):
        unusual()"""


def convert_lines(v: str, pg_type: str, c: str) -> list[str]:
    """The lines that convert the value in variable ``v`` (None stays None) to ``pg_type``:
    its usual value inline, any other by the converter named ``c``."""
    if pg_type == "timestamptz":
        return [_TIMESTAMPTZ.format(v=v, c=c)]
    if pg_type == "jsonb":
        return [_JSONB.format(v=v)]
    if pg_type in _INLINE:
        test, value = _INLINE[pg_type]
        return [f"    if {test.format(v=v)}:",
                f"        {v} = {value.format(v=v)}" if value else "        pass",
                f"    elif {v} is not None:\n        {v} = {c}({v})"]
    return [f"    if {v} is not None:\n        {v} = {c}({v})"]


_TEXT = """\
    if {v} is not None and (type({v}) is not str or "\\x00" in {v}
                            or not {v}.isascii() and SURROGATE.search({v})):
        unusual()"""
_EPOCH = """\
    if type({v}) is int:
        {v} = {v} * {multiply} // {divide} - {pg_epoch_us}
        if not FIRST_US <= {v} <= LAST_US:
            unusual()
    elif {v} is not None:
        {v} = {c}({v})"""


def mapped_lines(v: str, i: int, column: MappedColumnSettings, root: str,
                 namespace: dict[str, Any], event_type: str) -> list[str] | None:
    """The lines that find and convert a mapped column of the event (or of a child table's
    item, ``root``) as straight-line code, its converter and default put in ``namespace``
    as ``c<i>`` and ``d<i>``; None for one left to its compiled function (a path through an
    array, a key or header read as JSON, a zoned time, the record's topic or timestamp)."""
    lines = _found(v, column, root)
    if lines is None or column.time_zone is not None:
        return None
    namespace[f"c{i}"] = value_converter(column)
    if column.time_unit is not None and column.type == "timestamptz":
        multiply, divide = EPOCH_UNITS[column.time_unit]
        lines.append(_EPOCH.format(v=v, c=f"c{i}", multiply=multiply, divide=divide,
                                   pg_epoch_us=PG_EPOCH_MS * 1000))
    elif column.type == "text":
        lines.append(_TEXT.format(v=v))
    elif column.time_unit is None:
        lines += convert_lines(v, column.type, f"c{i}")
    else:
        lines.append(f"    if {v} is not None:\n        {v} = c{i}({v})")
    default = converted_default(column, event_type)
    if default is not None:
        namespace[f"d{i}"] = default
        lines.append(f"    if {v} is None:\n        {v} = d{i}")
    return lines


def _found(v: str, column: MappedColumnSettings, root: str) -> list[str] | None:
    """The lines that put a mapped column's raw value in ``v`` (None when absent): a path of
    keys into ``root``, or the Kafka key's or a header's text or bytes; None for any other
    (a path through an array, a key or header read as JSON)."""
    steps = column.steps
    if column.source == "event" and all(isinstance(step, str) for step in steps):
        lines = [f"    {v} = {root}.get({steps[0]!r})" if steps else f"    {v} = {root}"]
        for step in steps[1:]:
            lines += [f"    if type({v}) is dict:\n        {v} = {v}.get({step!r})",
                      f"    elif {v} is not None:\n        unusual()"]
        return lines
    if column.source not in ("key", "header") or column.path is not None or (
            column.type not in AS_TEXT and column.type != "bytea") or column.time_unit:
        return None
    if column.source == "key":
        lines = [f"    {v} = key"]
    else:  # the last header of that name, as Kafka's lastHeader
        lines = [f"    {v} = None", "    for name, value in headers:",
                 f"        if name == {column.header!r}:\n            {v} = value"]
    if column.type != "bytea":  # not UTF-8: the generic code's dead letter says so
        lines.append(f"    if {v} is not None:\n        {v} = {v}.decode()")
    return lines


def namespace() -> dict[str, Any]:
    """What generated builders' code refers to."""
    return {
        "UUID": UUID, "Decimal": Decimal, "UTC": UTC,
        "fromisoformat": datetime.fromisoformat, "PG_EPOCH": PG_EPOCH,
        "FIRST_US": FIRST_US, "LAST_US": LAST_US, "dumps": orjson.dumps,
        "BACKSLASH": BACKSLASH, "has_nul_escape": has_nul_escape, "SURROGATE": SURROGATE,
        "unusual": _unusual,
    }


def compile_row_builder(
    names: Sequence[str], pg_types: Sequence[str], texts: Sequence[int],
    converters: dict[int, Converter], time_index: int | None,
    mapped: dict[int, tuple[MappedColumnSettings, Callable[..., Any]]] | None = None,
    required: Sequence[int] = (), event_type: str = "",
) -> RowBuilder:
    """The builder of one event type's rows: ``names`` and ``pg_types`` per column, the
    ``texts`` to check, each other column's converter, the event time's column if any,
    the mapped columns (their settings and compiled functions: a value from a path,
    converted), and those of them that may not be null (the generic builder then says
    why)."""
    v = [f"v{i}" for i in range(len(names))]
    lines = ["def build(event, topic, partition, offset, timestamp_ms, raw, key=None, "
             "headers=()):"]
    if v:
        lines.append(f"    {', '.join(v)}, = map(event.get, NAMES)")
    if texts:
        lines.append(_TEXTS.format(
            types=" and ".join(f"(type({v[i]}) is str or {v[i]} is None)" for i in texts),
            joined=", ".join(f"{v[i]} or ''" for i in texts)))
    space = namespace() | {"NAMES": tuple(names)}
    for i, convert in converters.items():
        space[f"c{i}"] = convert
        lines += convert_lines(v[i], pg_types[i], f"c{i}")
    for i, (column, value_of) in (mapped or {}).items():
        inline = mapped_lines(v[i], i, column, "event", space, event_type)
        if inline is None:
            space[f"m{i}"] = value_of
            inline = [f"    {v[i]} = m{i}(event, key, headers, topic, timestamp_ms)"]
        lines += inline
    lines += [f"    if {v[i]} is None:\n        unusual()" for i in required]
    first_ms, last_ms = UTC_MILLIS
    event_time = "kafka_ts" if time_index is None else v[time_index]
    lines += [
        f"    if not {first_ms} <= timestamp_ms <= {last_ms}:",
        "        unusual()",
        f"    kafka_ts = (timestamp_ms - {PG_EPOCH_MS}) * 1000",
        f"    return ({''.join(x + ', ' for x in v)}" + tail_source({
            "event_time": event_time, "kafka_topic": "topic", "kafka_partition": "partition",
            "kafka_offset": "offset", "kafka_timestamp": "kafka_ts", "raw": "raw"}) + ")",
    ]
    build: RowBuilder = compile_source("\n".join(lines) + "\n", "build", space)
    return build


def compile_source(source: str, name: str, space: dict[str, Any]) -> Any:
    """The function ``name`` that ``source`` (our own generated code) defines."""
    exec(compile(source, f"<{name}>", "exec"), space)  # noqa: S102 - our own code
    return space[name]
