"""Protobuf through the Schema Registry: a registered schema compiled, its payloads decoded.

The example order message is the JSON contract's order (schemas/order.v1.json) in
Protobuf: the event it decodes to, and the columns its derived JSON Schema makes, are the
JSON event's.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import descriptor_pb2  # type: ignore[import-untyped]
from google.protobuf.message_factory import GetMessageClass  # type: ignore[import-untyped]

from processor.contracts import Column, derive_columns
from processor.decode.formats.protobuf import (
    ProtobufDecodeError,
    ProtobufReader,
    read_message_indexes,
)
from processor.registry.protobuf_schema import (
    ProtoSchema,
    ProtoSchemaError,
    json_schema_from_proto,
    parse_proto,
    proto_problems,
)

ORDER_PROTO = """\
syntax = "proto3";
package weir.examples;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

message Order {
  message Item {
    string sku = 1;
    int64 qty = 2;
    double price = 3;
  }
  // Lower-case names, so that a status decodes as the JSON contract's status does.
  enum Status {
    created = 0;
    paid = 1;
    shipped = 2;
    cancelled = 3;
  }
  string event_id = 1;
  string customer_id = 2;
  int64 seq = 3;
  google.protobuf.Timestamp occurred_at = 4;
  string order_id = 5;
  Status status = 6;
  double amount = 7;
  string currency = 8;
  repeated Item items = 9;
  google.protobuf.StringValue channel = 10;
}

message Refund {
  string order_id = 1;
}
"""

EVENT = {
    "event_id": "0b7c5a8e-1d7e-4f8a-9a53-3f1c2d4e5f60",
    "customer_id": "c-42",
    "seq": 7,
    "occurred_at": "2026-11-25T10:00:00+00:00",
    "order_id": "o-1",
    "status": "paid",
    "amount": 99.5,
    "currency": "EUR",
    "items": [{"sku": "A-1", "qty": 2, "price": 10.0}, {"sku": "B-2", "qty": 1, "price": 79.5}],
    "channel": "web",
}


@pytest.fixture(scope="module")
def schema() -> ProtoSchema:
    return parse_proto(ORDER_PROTO)


@pytest.fixture(scope="module")
def order(schema: ProtoSchema) -> Any:
    return schema.message([0])


def _order_bytes(order: Any, **changes: Any) -> bytes:
    cls = GetMessageClass(order)
    msg = cls(event_id=EVENT["event_id"], customer_id="c-42", seq=7, order_id="o-1",
              status=1, amount=99.5, currency="EUR")
    msg.occurred_at.FromDatetime(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    msg.items.add(sku="A-1", qty=2, price=10.0)
    msg.items.add(sku="B-2", qty=1, price=79.5)
    msg.channel.value = "web"
    for name, value in changes.items():
        setattr(msg, name, value)
    return bytes(msg.SerializeToString())


def _base64_descriptor(schema: ProtoSchema) -> str:
    file_proto = descriptor_pb2.FileDescriptorProto()
    schema.file.CopyToProto(file_proto)
    return base64.b64encode(file_proto.SerializeToString()).decode("ascii")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --- the registered schema ------------------------------------------------------------------


def test_text_and_base64_descriptor_decode_the_same_event(schema: ProtoSchema) -> None:
    from_descriptor = parse_proto(_base64_descriptor(schema))
    payload = _order_bytes(schema.message([0]))
    assert ProtobufReader(schema.message([0])).decode(payload) == EVENT
    assert ProtobufReader(from_descriptor.message([0])).decode(payload) == EVENT
    assert from_descriptor.message_names == ("weir.examples.Order", "weir.examples.Refund")


def test_base64_descriptor_split_over_lines(schema: ProtoSchema) -> None:
    text = _base64_descriptor(schema)
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert parse_proto(wrapped).message([0]).full_name == "weir.examples.Order"


def test_message_index_paths(schema: ProtoSchema) -> None:
    assert schema.message([0]).full_name == "weir.examples.Order"
    assert schema.message([]).full_name == "weir.examples.Order"
    assert schema.message([1]).full_name == "weir.examples.Refund"
    assert schema.message([0, 0]).full_name == "weir.examples.Order.Item"


def test_message_index_out_of_range(schema: ProtoSchema) -> None:
    with pytest.raises(ProtoSchemaError, match=r"message index \[2\] is not in the schema "
                       r"\(it has 2 top-level messages\)"):
        schema.message([2])
    with pytest.raises(ProtoSchemaError, match=r"message index \[0, 1\] is not in the schema "
                       r"\(weir.examples.Order, at \[0\], has 1 nested messages\)"):
        schema.message([0, 1])


def test_two_versions_of_one_message_coexist(schema: ProtoSchema) -> None:
    v2 = parse_proto(ORDER_PROTO.replace("string currency = 8;",
                                         "string currency = 8;\n  string note = 11;"))
    assert schema.message([0]).full_name == v2.message([0]).full_name
    assert len(schema.message([0]).fields) == 10
    assert len(v2.message([0]).fields) == 11


def test_protoc_errors_are_reported() -> None:
    with pytest.raises(ProtoSchemaError, match=r'does not compile: schema.proto:2:13: "strin" '
                       "is not defined"):
        parse_proto('syntax = "proto3";\nmessage X { strin a = 1; }\n')


def test_imports_of_other_files_are_refused() -> None:
    text = 'syntax = "proto3"; import "common/money.proto"; message X { string a = 1; }'
    with pytest.raises(ProtoSchemaError, match=r"imports 'common/money.proto'.*schema "
                       "references.*not supported"):
        parse_proto(text)
    file_proto = descriptor_pb2.FileDescriptorProto(name="x.proto",
                                                    dependency=["common/money.proto"])
    encoded = base64.b64encode(file_proto.SerializeToString()).decode("ascii")
    with pytest.raises(ProtoSchemaError, match="schema references"):
        parse_proto(encoded)


def test_base64_that_is_no_descriptor() -> None:
    with pytest.raises(ProtoSchemaError, match="not a serialized FileDescriptorProto"):
        parse_proto(base64.b64encode(b"\xff\xff\xff\xff").decode("ascii"))


# --- the JSON Schema and the columns ------------------------------------------------------


def test_order_columns_match_the_json_contract(order: Any) -> None:
    schema = json_schema_from_proto(order, version=3)
    assert schema["title"] == "weir.examples.Order"
    assert schema["version"] == 3
    assert schema["type"] == "object"
    assert derive_columns(schema) == (
        Column("event_id", "text", False),
        Column("customer_id", "text", False),
        Column("seq", "bigint", False),
        Column("occurred_at", "timestamptz", False),
        Column("order_id", "text", False),
        Column("status", "text", False),
        Column("amount", "double precision", False),
        Column("currency", "text", False),
        Column("items", "jsonb", False),
        Column("channel", "text", True),
    )
    assert schema["properties"]["status"] == {
        "type": "string", "enum": ["created", "paid", "shipped", "cancelled"]}
    assert schema["properties"]["items"]["items"]["required"] == ["sku", "qty", "price"]
    assert "channel" not in schema["required"]


SCALARS_PROTO = """\
syntax = "proto3";
package weir.test;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message All {
  enum Kind { A = 0; B = 1; }
  message Inner { string name = 1; }
  int32 i32 = 1;
  sint32 s32 = 2;
  sfixed32 sf32 = 3;
  int64 i64 = 4;
  sint64 s64 = 5;
  sfixed64 sf64 = 6;
  uint32 u32 = 7;
  fixed32 f32 = 8;
  uint64 u64 = 9;
  fixed64 f64 = 10;
  float fl = 11;
  double db = 12;
  bool bo = 13;
  string st = 14;
  bytes by = 15;
  Kind kind = 16;
  optional int32 maybe = 17;
  optional Kind maybe_kind = 18;
  oneof choice { string text = 19; int64 number = 20; }
  Inner inner = 21;
  repeated int32 numbers = 22;
  map<string, int64> counts = 23;
  map<int32, Inner> by_id = 24;
  google.protobuf.Int64Value wrapped = 25;
  google.protobuf.BytesValue blob = 26;
  optional google.protobuf.Timestamp maybe_at = 27;
  repeated google.protobuf.Timestamp times = 28;
}
"""


@pytest.fixture(scope="module")
def every_type() -> Any:
    return parse_proto(SCALARS_PROTO).message([0])


def test_mapping_of_every_kind(every_type: Any) -> None:
    schema = json_schema_from_proto(every_type, version=1)
    props = schema["properties"]
    int32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1,
             "x-weir-column-type": "integer"}
    int64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    assert props["i32"] == props["s32"] == props["sf32"] == int32
    assert props["i64"] == props["s64"] == props["sf64"] == int64
    assert props["u32"] == props["f32"] == {"type": "integer", "minimum": 0,
                                            "maximum": 2**32 - 1}
    assert props["u64"] == props["f64"] == {"type": "integer", "minimum": 0,
                                            "maximum": 2**64 - 1,
                                            "x-weir-column-type": "numeric"}
    assert props["fl"] == props["db"] == {"type": "number",
                                          "x-weir-column-type": "double precision"}
    assert props["by"] == {"type": "string", "contentEncoding": "base64",
                           "x-weir-column-type": "text"}
    assert props["maybe_kind"] == {"type": ["string", "null"], "enum": ["A", "B", None]}
    assert props["counts"] == {"type": "object", "additionalProperties": int64}
    assert props["numbers"] == {"type": "array", "items": int32}
    assert props["wrapped"] == {**int64, "type": ["integer", "null"]}
    assert props["times"] == {"type": "array",
                              "items": {"type": "string", "format": "date-time"}}
    assert list(props) == [f.name for f in sorted(every_type.fields, key=lambda f: f.number)]
    assert schema["required"] == ["i32", "s32", "sf32", "i64", "s64", "sf64", "u32", "f32",
                                  "u64", "f64", "fl", "db", "bo", "st", "by", "kind",
                                  "numbers", "counts", "by_id", "times"]
    columns = {c.name: (c.pg_type, c.nullable) for c in derive_columns(schema)}
    assert columns["i32"] == ("integer", False)
    assert columns["u32"] == ("bigint", False)
    assert columns["u64"] == ("numeric", False)
    assert columns["maybe"] == ("integer", True)
    assert columns["text"] == ("text", True)
    assert columns["inner"] == ("jsonb", True)
    assert columns["by_id"] == ("jsonb", False)
    assert columns["wrapped"] == ("bigint", True)
    assert columns["blob"] == ("text", True)
    assert columns["maybe_at"] == ("timestamptz", True)


def test_decode_of_every_kind(every_type: Any) -> None:
    cls = GetMessageClass(every_type)
    msg = cls(i32=-5, s32=-6, sf32=-7, i64=-(2**63), s64=2**63 - 1, sf64=-9, u32=2**32 - 1,
              f32=11, u64=2**64 - 1, f64=13, fl=0.1, db=0.1, bo=True, st="ü", by=b"\x00\xff",
              kind=1, maybe=0, number=20, numbers=[1, 2, 3])
    msg.inner.name = "x"
    msg.counts["a"] = 1
    msg.by_id[-3].name = "y"
    msg.wrapped.value = 0
    msg.times.add(seconds=-1, nanos=500_000_000)
    event = ProtobufReader(every_type).decode(msg.SerializeToString())
    assert event == {
        "i32": -5, "s32": -6, "sf32": -7, "i64": -(2**63), "s64": 2**63 - 1, "sf64": -9,
        "u32": 2**32 - 1, "f32": 11, "u64": 2**64 - 1, "f64": 13,
        "fl": 0.1, "db": 0.1, "bo": True, "st": "ü", "by": "AP8=", "kind": "B",
        "maybe": 0, "maybe_kind": None, "text": None, "number": 20,
        "inner": {"name": "x"}, "numbers": [1, 2, 3], "counts": {"a": 1},
        "by_id": {"-3": {"name": "y"}}, "wrapped": 0, "blob": None, "maybe_at": None,
        "times": ["1969-12-31T23:59:59.500000+00:00"],
    }


def test_absent_fields_decode_to_defaults(order: Any) -> None:
    assert ProtobufReader(order).decode(b"") == {
        "event_id": "", "customer_id": "", "seq": 0, "occurred_at": None, "order_id": "",
        "status": "created", "amount": 0.0, "currency": "", "items": [], "channel": None,
    }


@pytest.mark.parametrize(("seconds", "nanos"), [
    (0, 0), (1, 1000), (-1, 999_999_999), (1_795_600_800, 123_456_789),
    (-62_135_596_800, 0), (253_402_300_799, 999_999_999), (951_782_400, 0),  # 2000-02-29
])
def test_timestamps_read_as_isoformat(order: Any, seconds: int, nanos: int) -> None:
    msg = GetMessageClass(order)()
    msg.occurred_at.seconds = seconds
    msg.occurred_at.nanos = nanos
    expected = (datetime(1970, 1, 1, tzinfo=UTC)
                + timedelta(seconds=seconds, microseconds=nanos // 1000)).isoformat()
    assert ProtobufReader(order).decode(msg.SerializeToString())["occurred_at"] == expected


def test_nested_message_index_decodes_the_item(schema: ProtoSchema) -> None:
    value = b"\x00" + b"\x00\x00\x00\x2a" + b"\x04\x00\x00"  # magic, id 42, indexes [0, 0]
    item = GetMessageClass(schema.message([0, 0]))(sku="A-1", qty=2, price=10.0)
    value += item.SerializeToString()
    indexes, offset = read_message_indexes(memoryview(value), 5)
    assert indexes == (0, 0)
    event = ProtobufReader(schema.message(indexes)).decode(memoryview(value)[offset:])
    assert event == {"sku": "A-1", "qty": 2, "price": 10.0}


# --- the message-index array ----------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [
    (b"\x00", ((0,), 1)),
    (b"\x02\x00", ((0,), 2)),
    (b"\x02\x02", ((1,), 2)),
    (b"\x04\x00\x00rest", ((0, 0), 3)),
    (b"\x06\x02\x04\xac\x02", ((1, 2, 150), 5)),
])
def test_message_indexes(data: bytes, expected: tuple[tuple[int, ...], int]) -> None:
    assert read_message_indexes(data, 0) == expected
    header = b"\x00\x00\x00\x00\x07"
    indexes, offset = read_message_indexes(header + data, 5)
    assert (indexes, offset - 5) == expected


@pytest.mark.parametrize(("data", "message"), [
    (b"", "truncated in its count"),
    (b"\x80", "truncated in its count"),
    (b"\x04\x00", "truncated in index 1"),
    (b"\xff\xff\xff\xff\xff\x01", "overlong varint in its count"),
    (b"\x02\xff\xff\xff\xff\xff\x01", "overlong varint in index 0"),
    (b"\x01", r"negative count \(-1\)"),
    (b"\x02\x01", r"negative index \(-1\)"),
    (b"\xca\x01", r"claims 101 indexes \(at most 100\)"),
])
def test_bad_message_indexes(data: bytes, message: str) -> None:
    with pytest.raises(ProtobufDecodeError, match=message):
        read_message_indexes(data, 0)


# --- payloads that are not the writer's message ----------------------------------------------


@pytest.mark.parametrize(("payload", "message"), [
    (b"\x0a\x10abc", "the payload is not a weir.examples.Order"),  # truncated
    (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "the payload is not a weir.examples.Order"),
    (b"\x1a\x01a", r"field number 3 has wire type 2, which the writer schema does not declare "
                   r"\(it declares 'seq' \(3\) with wire type 0\)"),
    (_varint(99 << 3) + b"\x01", "^field number 99 has wire type 0, which the writer schema "
                                 "does not declare$"),
    (b"\x0a\x02\xff\xfe", "bad UTF-8"),
    (b"\x30\x07", r"^field 'status' \(6\): enum value 7 is not in enum Status$"),
    # an item (field 9) holding field 99
    (b"\x4a\x03" + _varint(99 << 3) + b"\x01",
     r"^field 'items' \(9\): field number 99 has wire type 0"),
    # a Timestamp (field 4) with field 7, and one whose seconds are past year 9999
    (b"\x22\x02\x38\x01", r"^field 'occurred_at' \(4\): field number 7 has wire type 0"),
    (b"\x22\x07\x08" + _varint(253_402_300_800),
     r"^field 'occurred_at' \(4\): Timestamp seconds 253402300800 is outside years"),
    (b"\x22\x0b\x10" + _varint(2**64 - 1), r"Timestamp nanos -1 is outside"),
    # a StringValue (field 10) with a varint for its string
    (b"\x52\x02\x08\x01", r"^field 'channel' \(10\): field number 1 has wire type 0"),
])
def test_bad_payloads(order: Any, payload: bytes, message: str) -> None:
    with pytest.raises(ProtobufDecodeError, match=message):
        ProtobufReader(order).decode(payload)


def test_truncated_real_payload(order: Any) -> None:
    payload = _order_bytes(order)
    with pytest.raises(ProtobufDecodeError, match=r"is not a weir\.examples\.Order"):
        ProtobufReader(order).decode(payload[:-3])


# --- writer and reader ------------------------------------------------------------------------


def _variant(old: str, new: str) -> Any:
    assert old in ORDER_PROTO
    return parse_proto(ORDER_PROTO.replace(old, new)).message([0])


def test_compatible_changes_are_no_problem(order: Any) -> None:
    renamed = _variant("string order_id = 5;", "string order_ref = 5;\n  int32 extra = 12;")
    widened = _variant("int64 qty = 2;", "uint32 qty_dropped = 4;")
    assert proto_problems(order, order) == []
    assert proto_problems(order, renamed) == []
    assert proto_problems(renamed, order) == []
    assert proto_problems(order, widened) == []
    narrow = _variant("int64 seq = 3;", "int32 seq = 3;")
    assert proto_problems(narrow, order) == []  # int32 into int64 fits


def test_reader_names_and_defaults(order: Any) -> None:
    reader = _variant("string order_id = 5;", "string order_ref = 5;\n  int32 extra = 12;\n"
                      "  repeated string tags = 13;\n  google.protobuf.Timestamp at = 14;")
    event = ProtobufReader(order, reader).decode(_order_bytes(order))
    expected = {k: v for k, v in EVENT.items() if k != "order_id"}
    expected.update(order_ref="o-1", extra=0, tags=[], at=None)
    assert event == expected
    assert list(event)[:5] == ["event_id", "customer_id", "seq", "occurred_at", "order_ref"]
    dropped = _variant("string currency = 8;", "")
    assert "currency" not in ProtobufReader(order, dropped).decode(_order_bytes(order))


def test_reader_enum_names(order: Any) -> None:
    reader = _variant("paid = 1;", "settled = 1;")
    assert ProtobufReader(order, reader).decode(_order_bytes(order))["status"] == "settled"


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("int64 seq = 3;", "string seq = 3;",
     r"field 'seq' \(3\): int64 in the writer, string in the reader: a different type"),
    ("int64 seq = 3;", "int32 sequence = 3;",
     r"field 'sequence' \(3\): .*do not all fit the reader's type"),
    ("int64 seq = 3;", "sint64 seq = 3;", r"encoded differently on the wire"),
    ("repeated Item items = 9;", "Item items = 9;",
     r"field 'items' \(9\): repeated weir.examples.Order.Item in the writer, "
     r"weir.examples.Order.Item in the reader: the cardinality changed"),
    ("int64 qty = 2;", "string qty = 2;", r"field 'items.qty' \(9.2\): int64 in the writer"),
    ("google.protobuf.StringValue channel = 10;", "string channel = 10;",
     r"field 'channel' \(10\):.*a different type"),
    ("google.protobuf.Timestamp occurred_at = 4;", "Item occurred_at = 4;",
     r"field 'occurred_at' \(4\):.*a different kind of message"),
    ("double amount = 7;", "float amount = 7;", r"field 'amount' \(7\): double in the writer"),
    ("cancelled = 3;", "", r"field 'status' \(6\):.*has no value for cancelled \(3\)"),
])
def test_incompatible_changes(order: Any, old: str, new: str, problem: str) -> None:
    changed = _variant(old, new)
    problems = proto_problems(order, changed)
    assert len(problems) == 1, problems
    assert re.search(problem, problems[0]), problems[0]


def test_problems_both_ways(order: Any) -> None:
    # Dropping an enum value breaks readers of old data, not writers of new data.
    fewer = _variant("cancelled = 3;", "")
    assert proto_problems(order, fewer) != []
    assert proto_problems(fewer, order) == []
    # A type change breaks both directions.
    text = _variant("int64 seq = 3;", "string seq = 3;")
    assert proto_problems(text, order) == [
        "field 'seq' (3): string in the writer, int64 in the reader: a different type"]
    # int32 → int64 widens; int64 → int32 narrows.
    narrow = _variant("int64 seq = 3;", "int32 seq = 3;")
    assert proto_problems(narrow, order) == []
    assert proto_problems(order, narrow) != []


def test_recursive_messages_compare_and_decode() -> None:
    tree = parse_proto('syntax = "proto3"; message Node { string name = 1; '
                       "repeated Node children = 2; }").message([0])
    assert proto_problems(tree, tree) == []
    schema = json_schema_from_proto(tree, version=1)
    # The message inside itself is left free-form: a JSON Schema here has no recursion.
    assert schema["properties"]["children"] == {"type": "array", "items": {"type": "object"}}
    cls = GetMessageClass(tree)
    msg = cls(name="root")
    msg.children.add(name="leaf").children.add(name="deep")
    assert ProtobufReader(tree).decode(msg.SerializeToString()) == {
        "name": "root",
        "children": [{"name": "leaf", "children": [{"name": "deep", "children": []}]}],
    }
