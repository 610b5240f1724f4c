"""The generated Avro reader reads what fastavro reads, and is never laxer.

hypothesis builds random writer schemas (records nesting records, arrays, maps, enums, fixed,
unions, every primitive and the logical types Weir converts), a record for each (logical
values within and past what a column holds), and writes it with fastavro. Each record's
bytes, then the same bytes cut short, with a byte appended or changed, are read by both
:class:`AvroReader` paths: the generated code and fastavro with the same converters. On a
record both give the same event; on damaged bytes the generated reader gives the same event
or the same dead letter as fastavro, or refuses where fastavro let it through (a boolean
byte other than 0 or 1, a negative length) — never the other way round.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from processor.core.errors import EventRejected
from processor.decode.formats.avro import AvroReader, _strip
from processor.decode.formats.avro_compiled import _Emitter, compile_reader

_names = iter(range(10**9))


def _name(stem: str) -> str:
    return f"{stem}{next(_names)}"


_PRIMITIVE = st.sampled_from(["null", "boolean", "int", "long", "float", "double",
                              "string", "bytes"])
_LOGICAL = st.sampled_from([
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "long", "logicalType": "local-timestamp-millis"},
    {"type": "int", "logicalType": "date"},
    {"type": "int", "logicalType": "time-millis"},
    {"type": "long", "logicalType": "time-micros"},
    {"type": "string", "logicalType": "uuid"},
    {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
    {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
    {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 0},
])


def _enum() -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=4, unique=True).map(
        lambda symbols: {"type": "enum", "name": _name("E"), "symbols": symbols})


def _fixed() -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(0, 6).map(lambda size: {"type": "fixed", "name": _name("F"),
                                               "size": size})


def _record(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(children, max_size=4).map(lambda types: {
        "type": "record", "name": _name("R"),
        "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]})


def _plain_union(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    # A union's branches are of different types; a logical one only beside null (fastavro's
    # path reads a union of several logical branches with its own conversions).
    return st.one_of(
        children.map(lambda t: ["null", t] if t != "null" and not isinstance(t, list)
                     else ["null", "long"]),
        st.lists(st.sampled_from(["boolean", "long", "double", "string", "bytes"]),
                 min_size=2, max_size=4, unique=True).map(lambda b: ["null", *b]),
    )


def _types(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        _record(children), st.builds(lambda t: {"type": "array", "items": t}, children),
        st.builds(lambda t: {"type": "map", "values": t}, children), _plain_union(children))


_SCHEMAS = st.recursive(st.one_of(_PRIMITIVE, _LOGICAL, st.deferred(_enum),
                                  st.deferred(_fixed)), _types, max_leaves=12)
_TOP = _record(_SCHEMAS)


_PLAIN: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(), "boolean": st.booleans(), "int": st.integers(-2**31, 2**31 - 1),
    "long": st.integers(-2**63, 2**63 - 1), "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False), "string": st.text(max_size=8),
    "bytes": st.binary(max_size=8),
}


def _value(data: st.DataObject, node: Any) -> Any:  # noqa: PLR0911 - one per type
    """A plain value of ``node`` (the stripped schema's: logical values as their ints or
    bytes), drawn by hypothesis."""
    if isinstance(node, list):
        branch = data.draw(st.sampled_from(node))
        return _value(data, branch)
    if isinstance(node, str):
        return data.draw(_PLAIN[node])
    kind = node["type"]
    logical = node.get("logicalType")
    if logical == "decimal":
        bound = 10 ** (node["precision"] + 1)  # past the precision too: a dead letter
        unscaled = data.draw(st.integers(-bound, bound))
        return unscaled.to_bytes(max(1, (unscaled.bit_length() + 8) // 8), "big",
                                 signed=True)
    if logical in ("timestamp-millis", "timestamp-micros", "local-timestamp-millis",
                   "time-micros"):
        return data.draw(st.one_of(st.integers(-10**17, 10**17),
                                   st.integers(-2**63, 2**63 - 1)))
    if logical in ("date", "time-millis"):
        return data.draw(st.integers(-2**31, 2**31 - 1))
    if logical == "uuid":
        return str(data.draw(st.uuids()))
    if kind in ("record", "error"):
        return {f["name"]: _value(data, f["type"]) for f in node["fields"]}
    if kind == "enum":
        return data.draw(st.sampled_from(node["symbols"]))
    if kind == "fixed":
        return data.draw(st.binary(min_size=node["size"], max_size=node["size"]))
    if kind == "array":
        return [_value(data, node["items"]) for _ in range(data.draw(st.integers(0, 3)))]
    if kind == "map":
        keys = data.draw(st.lists(st.text(max_size=4), max_size=3, unique=True))
        return {k: _value(data, node["values"]) for k in keys}
    return _value(data, kind)


def _verdict(read: Any, value: bytes) -> tuple[str, Any]:
    try:
        return "event", read(value, 0)
    except EventRejected as exc:
        return exc.reason, str(exc) if exc.reason == "conversion_error" else None


def _why(read: Any, value: bytes) -> str:
    try:
        read(value, 0)
    except EventRejected as exc:
        return str(exc)
    return ""


# What fastavro lets through: an index it reads from the end, a boolean byte over 1, a
# negative length (it reads the rest of the value), a varint past 64 bits (it wraps).
_LAX = re.compile(r"Unreadable: (union index -|enum index -|a boolean byte|a negative length"
                  r"|a varint longer)")


_ZERO_SIZE = re.compile(r"spare -=")


def _source(schema: dict[str, Any]) -> str:
    emitter = _Emitter(schema)
    emitter.value(schema, "record", 1, (), ())
    return "\n".join(emitter.lines)


def _same(a: Any, b: Any) -> bool:
    """Equal, with a float NaN (from damaged bytes) equal to itself."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _damaged(data: st.DataObject, value: bytes) -> list[bytes]:
    out = [value + data.draw(st.binary(min_size=1, max_size=2))]
    if value:
        cut = data.draw(st.integers(0, len(value) - 1))
        at = data.draw(st.integers(0, len(value) - 1))
        out += [value[:cut], value[:at] + bytes([data.draw(st.integers(0, 255))])
                + value[at + 1:]]
    return out


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_TOP, st.data())
def test_the_generated_reader_reads_as_fastavro(schema: dict[str, Any],
                                               data: st.DataObject) -> None:
    reader = AvroReader(schema)
    if reader._compiled is None:
        pytest.fail(f"no generated reader for {schema}")
    by_fastavro = reader._by_fastavro  # which path reads is the point
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(_strip(schema)),
                               _value(data, schema))
    value = out.getvalue()
    ours, theirs = _verdict(reader.decode, value), _verdict(by_fastavro, value)
    event(ours[0])
    assert ours[0] == theirs[0], (ours, theirs)
    assert _same(ours[1], theirs[1]), (ours, theirs)
    for damaged in _damaged(data, value):
        if _ZERO_SIZE.search(str(_source(schema))):
            # fastavro makes as many items as a damaged count says: no comparison to make.
            _verdict(reader.decode, damaged)
            continue
        ours, theirs = _verdict(reader.decode, damaged), _verdict(by_fastavro, damaged)
        if ours[0] == "decode_error" and theirs[0] != "decode_error":
            assert _LAX.search(_why(reader.decode, damaged)), (damaged, ours, theirs)
            event("stricter")
            continue
        assert ours[0] == theirs[0], (damaged, ours, theirs)
        assert _same(ours[1], theirs[1]), (damaged, ours, theirs)


def test_a_recursive_type_is_left_to_fastavro() -> None:
    schema = {"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "long"},
        {"name": "next", "type": ["null", "Node"], "default": None}]}
    assert compile_reader(schema) is None
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, {"value": 1, "next": {"value": 2, "next": None}})
    assert AvroReader(schema).decode(out.getvalue(), 0) == {
        "value": 1, "next": {"value": 2, "next": None}}


@pytest.mark.parametrize(("payload", "why"), [
    (b"\x02", "a boolean byte of 2"),
    (b"\x01", "a negative length"),
    (b"\x06ab", "a length of 3 bytes where 2 remain"),
    (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "a varint longer than 64 bits"),
])
def test_what_the_generated_reader_refuses(payload: bytes, why: str) -> None:
    field = "boolean" if why.startswith("a boolean") else \
        "long" if "varint" in why else "string"
    read = compile_reader({"type": "record", "name": "R",
                           "fields": [{"name": "a", "type": field}]})
    assert read is not None
    with pytest.raises(ValueError, match=why):
        read(payload, 0)


def test_items_of_no_bytes_are_bounded_per_record() -> None:
    # A count of 20,000 nulls is two bytes; an allowance of 10,000 such items per record
    # keeps a few damaged bytes from making millions of them.
    read = compile_reader({"type": "record", "name": "R",
                           "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}]})
    assert read is not None
    assert read(b"\x04\x00", 0) == {"a": [None, None]}
    with pytest.raises(ValueError, match="more than 10000 items of no bytes"):
        read(b"\xc0\xb8\x02\x00", 0)


def test_a_short_name_of_two_namespaces_is_left_to_fastavro() -> None:
    schema = {"type": "record", "name": "R", "namespace": "a", "fields": [
        {"name": "x", "type": {"type": "record", "name": "X", "fields": [
            {"name": "v", "type": "long"}]}},
        {"name": "y", "type": {"type": "record", "name": "X", "namespace": "b", "fields": [
            {"name": "w", "type": "string"}]}},
        {"name": "z", "type": "X"}]}
    assert compile_reader(schema) is None
    out = io.BytesIO()
    record = {"x": {"v": 1}, "y": {"w": "s"}, "z": {"v": 2}}
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    assert AvroReader(schema).decode(out.getvalue(), 0) == record
