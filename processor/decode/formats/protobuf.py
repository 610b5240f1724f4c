"""Protobuf: one record's payload, read with its writer's message, as a JSON-shaped event.

After the Confluent header (magic byte and schema id, :mod:`.framing`) a Protobuf value
carries its message-index array, which names the message inside the registered file
(:func:`read_message_indexes`), then the serialized message. :class:`ProtobufReader` parses
it with the writer's message class and walks the fields itself, with one handler per field
chosen once: ``json_format.MessageToDict`` costs several times more and turns 64-bit
integers into strings.

The event has the values a JSON producer would have sent (see
:func:`processor.registry.protobuf_schema.json_schema_from_proto` for the schema they
satisfy): integers as ints, bytes as base64, an enum as its value's name, a Timestamp as an
ISO 8601 UTC string, a wrapper as its value or None, a map with string keys.

The parser accepts what Weir must not: a field the writer's message does not declare (or a
declared number with another wire type) is kept aside as an unknown field, so bytes written
with another schema than the one their id names would decode to defaults. Any unknown
field, at any depth, is refused here, and so is an enum number the enum does not name.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from datetime import date
from operator import attrgetter
from typing import Any

from google.protobuf.descriptor import (  # type: ignore[import-untyped]
    Descriptor,
    FieldDescriptor,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from google.protobuf.message_factory import GetMessageClass  # type: ignore[import-untyped]
from google.protobuf.unknown_fields import UnknownFieldSet  # type: ignore[import-untyped]

from processor.core.errors import EventRejected
from processor.registry.protobuf_schema import ProtoSchema, ProtoSchemaError, proto_problems

Getter = Callable[[Any], Any]

MAX_INDEXES = 100
TIMESTAMP = "google.protobuf.Timestamp"
WRAPPERS = frozenset({
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
})
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAYS: dict[int, str] = {}  # days since the epoch → "YYYY-MM-DD"
_MAX_DAYS = 4096
# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: Python's (and ISO 8601's four-digit) years.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
_F32 = struct.Struct("<f")
_T = FieldDescriptor
_WIRE_TYPES = {
    _T.TYPE_DOUBLE: 1, _T.TYPE_FIXED64: 1, _T.TYPE_SFIXED64: 1,
    _T.TYPE_FLOAT: 5, _T.TYPE_FIXED32: 5, _T.TYPE_SFIXED32: 5,
    _T.TYPE_STRING: 2, _T.TYPE_BYTES: 2, _T.TYPE_MESSAGE: 2, _T.TYPE_GROUP: 3,
}  # every other scalar type, enums included, is a varint (wire type 0)


class ProtobufDecodeError(ValueError):
    """A Protobuf payload that cannot be this message's event; the message says why."""


def _zigzag_varint(data: bytes | memoryview, pos: int, what: str) -> tuple[int, int]:
    """One zig-zag varint of at most 32 bits at ``pos``: (value, the next offset)."""
    result = 0
    # A 32-bit value takes at most 5 bytes; a longer one is corrupt, not just large.
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise ProtobufDecodeError(f"the message-index array is truncated in {what}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
    raise ProtobufDecodeError(f"the message-index array has an overlong varint in {what}")


def read_message_indexes(data: bytes | memoryview, start: int) -> tuple[tuple[int, ...], int]:
    """Confluent's message-index array at ``data[start:]``: (indexes, the payload's offset).

    A zig-zag varint count, then that many zig-zag varint indexes; a count of 0 (the single
    byte 0x00, the usual case) means ``[0]``, the file's first message.
    """
    if start < len(data) and data[start] == 0:
        return (0,), start + 1
    count, pos = _zigzag_varint(data, start, "its count")
    if count < 0:
        raise ProtobufDecodeError(f"the message-index array has a negative count ({count})")
    if count > MAX_INDEXES:
        raise ProtobufDecodeError(
            f"the message-index array claims {count} indexes (at most {MAX_INDEXES})")
    if count == 0:
        return (0,), pos
    indexes = []
    for i in range(count):
        index, pos = _zigzag_varint(data, pos, f"index {i}")
        if index < 0:
            raise ProtobufDecodeError(f"the message-index array has a negative index ({index})")
        indexes.append(index)
    return tuple(indexes), pos


def _short_float(value: float) -> float:
    """A float field's value as the shortest decimal that is the same float32.

    Python widens float32 to double (0.1 becomes 0.10000000149011612); the producer meant
    the short form, which json_format prints too.
    """
    if not math.isfinite(value):
        return value
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _F32.unpack(_F32.pack(candidate))[0] == value:
                return candidate
        except OverflowError:
            continue
    return value


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _timestamp(stamp: Any) -> str:
    """A Timestamp as ``datetime.isoformat`` writes an aware UTC datetime, built faster.

    Microseconds are what datetime and PostgreSQL hold: nanoseconds beyond them are dropped.
    """
    _check_known(stamp)
    seconds, nanos = stamp.seconds, stamp.nanos
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise ProtobufDecodeError(f"Timestamp seconds {seconds} is outside years 0001..9999")
    if not 0 <= nanos <= 999_999_999:
        raise ProtobufDecodeError(f"Timestamp nanos {nanos} is outside 0..999999999")
    day, second = divmod(seconds, 86_400)
    text = _DAYS.get(day)
    if text is None:
        # Events cluster on a few days: the date's text is made once per day seen.
        if len(_DAYS) >= _MAX_DAYS:
            _DAYS.clear()
        text = _DAYS[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    micros = nanos // 1000
    if micros:
        return "%sT%02d:%02d:%02d.%06d+00:00" % (  # noqa: UP031 (faster than f-strings here)
            text, second // 3600, second // 60 % 60, second % 60, micros)
    return "%sT%02d:%02d:%02d+00:00" % (  # noqa: UP031
        text, second // 3600, second // 60 % 60, second % 60)


def _map_key(field: Any) -> Getter | None:
    """JSON object keys are strings: how a map key becomes one (None: it is one already)."""
    if field.type == _T.TYPE_STRING:
        return None
    if field.type == _T.TYPE_BOOL:
        return lambda key: "true" if key else "false"
    return str


class _Plan:
    """How to turn one message type (as written, named as read) into a dict."""

    __slots__ = ("descriptor", "fields", "known", "names")

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self.fields: tuple[tuple[str, Getter], ...] = ()
        self.known: dict[int, Any] = {f.number: f for f in descriptor.fields}
        self.names: dict[int, str] = {}

    def walk(self, msg: Any) -> dict[str, Any]:
        """The event (or nested object) of one parsed message."""
        if len(UnknownFieldSet(msg)):
            raise _unknown_field(msg, self.known, self.names)
        return {key: get(msg) for key, get in self.fields}


def _unknown_field(msg: Any, known: dict[int, Any], names: dict[int, str]
                   ) -> ProtobufDecodeError:
    """The error for the first unknown field of ``msg`` (whose fields by number are known)."""
    first = next(iter(UnknownFieldSet(msg)))
    number, wire = first.field_number, first.wire_type
    field = known.get(number)
    if field is None:
        return ProtobufDecodeError(f"field number {number} has wire type {wire}, which the "
                                   "writer schema does not declare")
    if field.type == _T.TYPE_ENUM and wire == 0:
        # A closed (proto2) enum keeps a number it does not name out of the field.
        return ProtobufDecodeError(
            f"field '{names.get(number, field.name)}' ({number}): enum value {first.data} is "
            f"not in enum {field.enum_type.name}")
    expected = _WIRE_TYPES.get(field.type, 0)
    return ProtobufDecodeError(
        f"field number {number} has wire type {wire}, which the writer schema does not "
        f"declare (it declares '{field.name}' ({number}) with wire type {expected})")


def _check_known(msg: Any) -> None:
    """Refuse unknown fields in a message decoded without a plan (Timestamp, a wrapper)."""
    if len(UnknownFieldSet(msg)):
        raise _unknown_field(msg, {f.number: f for f in msg.DESCRIPTOR.fields}, {})


class ProtobufReader:
    """Decodes payloads of one writer message, optionally named as a reader message.

    Built once per (writer, reader) pair: every field's handler is chosen here. With a
    reader, fields are matched by number; the event has the reader's field names, in the
    reader's field-number order, its enum value names, and its defaults for fields the
    writer lacks; the writer's other fields are dropped. Check
    :func:`processor.registry.protobuf_schema.proto_problems` first: the reader is trusted
    to be compatible.
    """

    def __init__(self, message: Descriptor, reader: Descriptor | None = None) -> None:
        self._message_class = GetMessageClass(message)
        self._name = str(message.full_name)
        self._plans: dict[tuple[Any, Any], _Plan] = {}
        self._root = self._plan(message, reader)

    def decode(self, payload: bytes | memoryview) -> dict[str, Any]:
        """The JSON-shaped event ``payload`` holds; raises :class:`ProtobufDecodeError`."""
        try:
            msg = self._message_class.FromString(payload)
        except DecodeError as exc:
            raise ProtobufDecodeError(f"the payload is not a {self._name}: {exc}") from None
        return self._root.walk(msg)

    def _plan(self, writer: Any, reader: Any | None) -> _Plan:
        key = (writer, reader)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        # Registered before its fields are built, so that a recursive message finds itself.
        plan = self._plans[key] = _Plan(writer)
        written = {f.number: f for f in writer.fields}
        read = {f.number: f for f in (reader or writer).fields}
        fields = []
        for number in sorted(read):
            out_field = read[number]
            plan.names[number] = out_field.name
            in_field = written.get(number)
            if in_field is None:
                fields.append((out_field.name, self._default(out_field)))
            else:
                fields.append((out_field.name, self._getter(in_field, out_field)))
        plan.fields = tuple(fields)
        return plan

    def _default(self, field: Any) -> Getter:
        """A reader-only field: what a payload without the field decodes to."""
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                return lambda _msg: {}
            return lambda _msg: []
        if field.has_presence:
            return lambda _msg: None
        convert = self._value(field, field, f"'{field.name}' ({field.number})")
        value = field.default_value if convert is None else convert(field.default_value)
        return lambda _msg: value

    def _getter(self, field: Any, out: Any) -> Getter:
        """How to read written field ``field`` (``out`` names it and its enum values)."""
        label = f"'{out.name}' ({field.number})"
        entry = field.message_type
        if field.is_repeated and entry is not None and entry.GetOptions().map_entry:
            out_entry = out.message_type if out.message_type is not None else entry
            key_of = _map_key(entry.fields_by_name["key"])
            value_of = self._value(entry.fields_by_name["value"],
                                   out_entry.fields_by_name["value"], label)
            return _map_getter(field.name, key_of, value_of)
        convert = self._value(field, out, label)
        if field.is_repeated:
            return _list_getter(field.name, convert)
        return _single_getter(field.name, bool(field.has_presence), convert)

    def _value(self, field: Any, out: Any, label: str) -> Getter | None:
        """How one value (an element, if repeated) becomes JSON-shaped; None: it is already."""
        if field.type == _T.TYPE_ENUM:
            enum = out.enum_type if out.type == _T.TYPE_ENUM else field.enum_type
            return _enum(enum, label)
        message = field.message_type
        if message is None:
            return _SCALAR_CONVERSIONS.get(field.type)
        full_name = message.full_name
        if full_name == TIMESTAMP:
            return _checked(_timestamp, label)
        if full_name in WRAPPERS:
            inner = message.fields_by_name["value"]
            return _checked(_wrapper(self._value(inner, inner, label)), label)
        return _checked(self._plan(message, out.message_type).walk, label)


_SCALAR_CONVERSIONS: dict[int, Getter] = {_T.TYPE_BYTES: _base64, _T.TYPE_FLOAT: _short_float}


def _single_getter(name: str, presence: bool, convert: Getter | None) -> Getter:
    if presence:  # optional, oneof members, messages: None when absent
        if convert is None:
            return lambda msg: getattr(msg, name) if msg.HasField(name) else None
        return lambda msg: convert(getattr(msg, name)) if msg.HasField(name) else None
    if convert is None:
        return attrgetter(name)  # the common case, a plain scalar: one C call
    return lambda msg: convert(getattr(msg, name))


def _list_getter(name: str, convert: Getter | None) -> Getter:
    if convert is None:
        return lambda msg: list(getattr(msg, name))
    return lambda msg: [convert(v) for v in getattr(msg, name)]


def _map_getter(name: str, key_of: Getter | None, value_of: Getter | None) -> Getter:
    if key_of is None and value_of is None:
        return lambda msg: dict(getattr(msg, name))
    key: Getter = key_of or str
    value: Getter = value_of or _same
    return lambda msg: {key(k): value(v) for k, v in getattr(msg, name).items()}


def _same(value: Any) -> Any:
    return value


def _enum(enum: Any, label: str) -> Getter:
    names: dict[int, str] = {v.number: v.name for v in enum.values}
    enum_name = enum.name

    def convert(number: int) -> str:
        try:
            return names[number]
        except KeyError:
            raise ProtobufDecodeError(f"field {label}: enum value {number} is not in enum "
                                      f"{enum_name}") from None

    return convert


def _wrapper(inner: Getter | None) -> Getter:
    """A wrapper message's value; its own unknown fields are refused like any message's."""
    def convert(wrapped: Any) -> Any:
        _check_known(wrapped)
        return wrapped.value if inner is None else inner(wrapped.value)

    return convert


def _checked(convert: Getter, label: str) -> Getter:
    """``convert`` for a message-typed field, its errors prefixed with the field."""
    def checked(value: Any) -> Any:
        try:
            return convert(value)
        except ProtobufDecodeError as exc:
            raise ProtobufDecodeError(f"field {label}: {exc}") from None

    return checked


class ProtobufTopicReader:
    """One registered file's records: the message-index array picks the message, whose
    reader is built once per index path (checked against the contract's message, if any)."""

    def __init__(self, schema: ProtoSchema, reader: Descriptor | None = None) -> None:
        self._schema = schema
        self._contract = reader
        self._readers: dict[tuple[int, ...], ProtobufReader] = {}
        self._refused: dict[tuple[int, ...], EventRejected] = {}  # a message's answer holds

    def decode(self, body: memoryview) -> dict[str, Any]:
        """The record after the schema id: its message indexes, then its message."""
        try:
            indexes, start = read_message_indexes(body, 0)
        except ProtobufDecodeError as exc:
            raise EventRejected("decode_error", "decode", f"message indexes: {exc}") from None
        reader = self._readers.get(indexes)
        if reader is None:
            reader = self._reader(indexes)
        try:
            return reader.decode(body[start:])
        except ProtobufDecodeError as exc:
            raise EventRejected("decode_error", "decode",
                                f"not a Protobuf message of its schema: {exc}") from None

    def _reader(self, indexes: tuple[int, ...]) -> ProtobufReader:
        refused = self._refused.get(indexes)
        if refused is not None:
            raise EventRejected(refused.reason, refused.stage, str(refused))
        try:
            return self._build(indexes)
        except EventRejected as exc:
            if len(self._refused) < MAX_INDEXES:
                self._refused[indexes] = exc
            raise

    def _build(self, indexes: tuple[int, ...]) -> ProtobufReader:
        try:
            message = self._schema.message(indexes)
        except ProtoSchemaError as exc:
            raise EventRejected("unknown_message_index", "decode", str(exc)) from None
        if self._contract is not None:
            problems = proto_problems(message, self._contract)
            if problems:
                # Named per message (an index path), as the topic's reader names it per id.
                raise EventRejected("schema_mismatch", "decode",
                                    f"message {message.full_name} cannot be read as the event "
                                    f"type's contract: {'; '.join(problems)}")
        reader = ProtobufReader(message, self._contract)
        self._readers[indexes] = reader
        return reader
