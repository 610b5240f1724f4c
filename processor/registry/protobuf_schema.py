"""A registered Protobuf schema: compiled once, its messages found by Confluent's index path.

The registry hands a PROTOBUF schema back in one of two forms: ``.proto`` text (what most
tools register) or a base64-encoded serialized ``FileDescriptorProto`` (what confluent-kafka's
Python ``ProtobufSerializer`` registers). :func:`parse_proto` accepts both and builds the file
into a descriptor pool of its own, never the process-wide default pool: two versions of one
message name (``weir.examples.Order`` v1 and v2) must live side by side.

``.proto`` text is compiled by the ``protoc`` bundled in grpcio-tools, run as a child Python
process (``grpc_tools.protoc.main``): the compiler reports errors on file descriptor 2, which
only a child lets us capture without redirecting the whole process's stderr, and importing
``grpc_tools.protoc`` in-process would install import hooks on ``sys.meta_path``.

Imports of Google's well-known types (``google/protobuf/timestamp.proto``,
``wrappers.proto``, ...) resolve; imports of other user files, which the registry expresses
as schema references, are not supported and say so.

:func:`json_schema_from_proto` turns a message into the draft-07 JSON Schema a contract is
made from, and :func:`proto_problems` says whether data written with one message can be read
as another.
"""

from __future__ import annotations

import base64
import binascii
import importlib.resources
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import (  # type: ignore[import-untyped]
    any_pb2,
    api_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    source_context_pb2,
    struct_pb2,
    timestamp_pb2,
    type_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import (  # type: ignore[import-untyped]
    Descriptor,
    FieldDescriptor,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

TIMESTAMP = "google.protobuf.Timestamp"
# Each wrapper holds one field, `value` (number 1), of this scalar type.
WRAPPERS = frozenset({
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
})
# The name protoc sees for the registered text; it shows up in protoc's messages.
_FILE_NAME = "schema.proto"
_PROTOC_TIMEOUT_S = 60.0
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_IMPORT = re.compile(r'\bimport\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;')
# The well-known types' own files, taken from the modules protobuf ships, so that a
# serialized descriptor's dependencies resolve without protoc.
_WELL_KNOWN = {
    module.DESCRIPTOR.name: module.DESCRIPTOR
    for module in (any_pb2, api_pb2, descriptor_pb2, duration_pb2, empty_pb2,
                   field_mask_pb2, source_context_pb2, struct_pb2, timestamp_pb2, type_pb2,
                   wrappers_pb2)
}

_T = FieldDescriptor
_TYPE_NAMES = {
    _T.TYPE_DOUBLE: "double", _T.TYPE_FLOAT: "float", _T.TYPE_INT64: "int64",
    _T.TYPE_UINT64: "uint64", _T.TYPE_INT32: "int32", _T.TYPE_FIXED64: "fixed64",
    _T.TYPE_FIXED32: "fixed32", _T.TYPE_BOOL: "bool", _T.TYPE_STRING: "string",
    _T.TYPE_GROUP: "group", _T.TYPE_MESSAGE: "message", _T.TYPE_BYTES: "bytes",
    _T.TYPE_UINT32: "uint32", _T.TYPE_ENUM: "enum", _T.TYPE_SFIXED32: "sfixed32",
    _T.TYPE_SFIXED64: "sfixed64", _T.TYPE_SINT32: "sint32", _T.TYPE_SINT64: "sint64",
}
_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1,
          "x-weir-column-type": "integer"}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
# Beyond bigint: only numeric holds every uint64.
_UINT64 = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1, "x-weir-column-type": "numeric"}
_FLOAT = {"type": "number", "x-weir-column-type": "double precision"}
_SCALAR_SCHEMAS: dict[int, dict[str, Any]] = {
    _T.TYPE_INT32: _INT32, _T.TYPE_SINT32: _INT32, _T.TYPE_SFIXED32: _INT32,
    _T.TYPE_INT64: _INT64, _T.TYPE_SINT64: _INT64, _T.TYPE_SFIXED64: _INT64,
    _T.TYPE_UINT32: _UINT32, _T.TYPE_FIXED32: _UINT32,
    _T.TYPE_UINT64: _UINT64, _T.TYPE_FIXED64: _UINT64,
    _T.TYPE_FLOAT: _FLOAT, _T.TYPE_DOUBLE: _FLOAT,
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "contentEncoding": "base64", "x-weir-column-type": "text"},
}
# Integer types by how they are encoded on the wire: within one encoding a reader reads the
# writer's number (when its range holds it); across encodings the bits mean something else.
_INT_ENCODING = {
    _T.TYPE_INT32: "varint", _T.TYPE_INT64: "varint", _T.TYPE_UINT32: "varint",
    _T.TYPE_UINT64: "varint", _T.TYPE_SINT32: "zigzag", _T.TYPE_SINT64: "zigzag",
    _T.TYPE_FIXED32: "fixed32", _T.TYPE_SFIXED32: "fixed32",
    _T.TYPE_FIXED64: "fixed64", _T.TYPE_SFIXED64: "fixed64",
}
_INT_RANGE = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1), _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1), _T.TYPE_INT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SINT64: (-(2**63), 2**63 - 1), _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1), _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1), _T.TYPE_FIXED64: (0, 2**64 - 1),
}


class ProtoSchemaError(ValueError):
    """A registered Protobuf schema Weir cannot use; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ProtoSchema:
    """One compiled ``.proto`` file, in a descriptor pool of its own."""

    file: Any  # google.protobuf.descriptor.FileDescriptor
    pool: Any  # google.protobuf.descriptor_pool.DescriptorPool, kept alive with the file

    def message(self, indexes: Sequence[int]) -> Descriptor:
        """The message a Confluent message-index path names.

        ``[i]`` is the file's i-th top-level message, ``[i, j]`` the j-th message nested in
        that, and so on. An empty path means ``[0]``, as on the wire.
        """
        path = list(indexes) or [0]
        top = list(self.file.message_types_by_name.values())
        if not 0 <= path[0] < len(top):
            raise ProtoSchemaError(f"message index {path} is not in the schema (it has "
                                   f"{len(top)} top-level messages)")
        message = top[path[0]]
        for depth, index in enumerate(path[1:], start=1):
            nested = list(message.nested_types)
            if not 0 <= index < len(nested):
                raise ProtoSchemaError(
                    f"message index {path} is not in the schema ({message.full_name}, at "
                    f"{path[:depth]}, has {len(nested)} nested messages)")
            message = nested[index]
        return message

    @property
    def message_names(self) -> tuple[str, ...]:
        """Full names of the file's top-level messages, in index order."""
        return tuple(m.full_name for m in self.file.message_types_by_name.values())


def parse_proto(text: str) -> ProtoSchema:
    """Compile a registered PROTOBUF schema: ``.proto`` text or a base64 FileDescriptorProto.

    Blocks for the compiler (tens of milliseconds) when given text: call it off the event
    loop, once per schema id.
    """
    file_proto = _from_base64(text)
    if file_proto is not None:
        return _build([file_proto], file_proto.name)
    files = _compile(text)
    return _build(files, _FILE_NAME)


def _from_base64(text: str) -> Any | None:
    """The FileDescriptorProto ``text`` encodes, or None when it is not base64 at all."""
    compact = "".join(text.split())
    if not compact or not _BASE64.fullmatch(compact):
        return None
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    file_proto = descriptor_pb2.FileDescriptorProto()
    try:
        file_proto.ParseFromString(data)
    except DecodeError as exc:
        raise ProtoSchemaError(
            f"the schema is base64 but not a serialized FileDescriptorProto: {exc}") from None
    if not file_proto.name:
        file_proto.name = _FILE_NAME
    return file_proto


def _include_path() -> Path:
    """The well-known types' .proto files bundled with grpcio-tools."""
    return Path(str(importlib.resources.files("grpc_tools") / "_proto"))


def _compile(text: str) -> list[Any]:
    """``.proto`` text → its FileDescriptorProto and those of its imports, imports first."""
    include = _include_path()
    for name in _IMPORT.findall(text):
        if not (include / name).is_file():
            raise ProtoSchemaError(_reference_message(name))
    with tempfile.TemporaryDirectory(prefix="weir-proto-") as tmp:
        source = Path(tmp) / _FILE_NAME
        source.write_text(text, encoding="utf-8")
        out = Path(tmp) / "descriptor_set.pb"
        script = "import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv))"
        args = [f"-I{tmp}", f"-I{include}", f"--descriptor_set_out={out}",
                "--include_imports", _FILE_NAME]
        # The child would otherwise install grpc_tools' import hooks for nothing.
        env = {**os.environ, "GRPC_PYTHON_DISABLE_DYNAMIC_STUBS": "1"}
        try:
            done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                                  timeout=_PROTOC_TIMEOUT_S, env=env, cwd=tmp, check=False)
        except subprocess.TimeoutExpired:
            raise ProtoSchemaError(
                f"protoc did not finish within {_PROTOC_TIMEOUT_S:.0f} s") from None
        # protoc names the file by its path on disk; the temporary directory means nothing
        # to whoever reads the message.
        stderr = done.stderr.decode("utf-8", "replace").replace(f"{tmp}{os.sep}", "")
        messages = [line for line in stderr.splitlines()
                    if line.strip() and ": warning:" not in line]
        if done.returncode != 0 or not out.exists():
            detail = "; ".join(messages) or f"protoc exited with status {done.returncode}"
            raise ProtoSchemaError(f"the .proto text does not compile: {detail}")
        data = out.read_bytes()
    return list(descriptor_pb2.FileDescriptorSet.FromString(data).file)


def _reference_message(name: str) -> str:
    return (f"the schema imports {name!r}, which is not one of Google's well-known types: "
            "imports of other registered schemas (schema references) are not supported")


def _build(files: list[Any], main: str) -> ProtoSchema:
    """Add ``files`` and the well-known files they import to a new pool; ``main``'s file."""
    pool = descriptor_pool.DescriptorPool()
    given = {f.name: f for f in files}
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        if name in given:
            file_proto = given[name]
        elif name in _WELL_KNOWN:
            file_proto = descriptor_pb2.FileDescriptorProto()
            _WELL_KNOWN[name].CopyToProto(file_proto)
        else:
            raise ProtoSchemaError(_reference_message(name))
        added.add(name)
        for dependency in file_proto.dependency:  # a pool needs a file's imports first
            add(dependency)
        try:
            pool.Add(file_proto)
        except (TypeError, ValueError, KeyError) as exc:
            raise ProtoSchemaError(f"the descriptor of {name!r} does not build: {exc}") from None

    add(main)
    return ProtoSchema(file=pool.FindFileByName(main), pool=pool)


def json_schema_from_proto(message: Descriptor, *, version: int) -> dict[str, Any]:
    """The draft-07 JSON Schema of ``message``'s decoded events.

    Properties are the message's fields in field-number order, named by field name. Each
    field's type (the column it makes, by :func:`processor.contracts.column_type`):

    ==================================  ==========================================  ============
    Protobuf                            JSON Schema                                 column
    ==================================  ==========================================  ============
    int32, sint32, sfixed32             integer, -2**31..2**31-1                    integer
    int64, sint64, sfixed64             integer, -2**63..2**63-1                    bigint
    uint32, fixed32                     integer, 0..2**32-1                         bigint
    uint64, fixed64                     integer, 0..2**64-1                         numeric
    float, double                       number                                      double prec.
    bool                                boolean                                     boolean
    string                              string                                      text
    bytes                               string, contentEncoding base64              text
    enum E                              string, enum: E's value names               text
    google.protobuf.Timestamp           string, format date-time                    timestamptz
    google.protobuf.XValue (wrappers)   the wrapped scalar's schema, or null        by scalar
    any other message                   object (its fields, recursively), or null   jsonb
    repeated T                          array of T                                  jsonb
    map<K, V>                           object, additionalProperties V (str keys)   jsonb
    ==================================  ==========================================  ============

    Required and nullable, as :class:`processor.decode.formats.protobuf.ProtobufReader`
    decodes: a proto3 scalar or enum without ``optional`` always has a value (its default
    when absent): required, not null. ``optional`` fields, oneof members, wrappers and
    messages other than Timestamp may be absent: nullable, not required. Repeated fields and
    maps are required (empty when absent). A Timestamp outside a oneof and without
    ``optional`` is required and not null: proto3 has no other way to say an event time must
    be there, and a contract's time field must be required; an event without it decodes to
    None there and fails the contract. Write ``optional google.protobuf.Timestamp`` for a
    time that may be absent.
    """
    schema: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": message.full_name,
        "version": version,
    }
    schema.update(_object_schema(message, (message.full_name,)))
    return schema


def _object_schema(message: Any, seen: tuple[str, ...]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in sorted(message.fields, key=lambda f: f.number):
        prop, is_required = _field_schema(field, seen)
        properties[field.name] = prop
        if is_required:
            required.append(field.name)
    return {"type": "object", "properties": properties, "required": required}


def _field_schema(field: Any, seen: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    """(schema, required) of one field as a property."""
    if _is_map(field):
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _value_schema(value, seen)}, True
    if field.is_repeated:
        return {"type": "array", "items": _value_schema(field, seen)}, True
    prop = _value_schema(field, seen)
    if field.is_required:  # proto2 `required`
        return prop, True
    kind = field.message_type.full_name if field.message_type is not None else None
    if kind == TIMESTAMP and field.containing_oneof is None:
        return prop, True
    if field.has_presence:  # optional, oneof members, messages (wrappers among them)
        return _nullable(prop), False
    return prop, True


def _value_schema(field: Any, seen: tuple[str, ...]) -> dict[str, Any]:
    """The schema of one value of ``field`` (an element, for a repeated field), not null."""
    if field.type == _T.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    message = field.message_type
    if message is None:
        return dict(_SCALAR_SCHEMAS[field.type])
    name = message.full_name
    if name == TIMESTAMP:
        return {"type": "string", "format": "date-time"}
    if name in WRAPPERS:
        return _value_schema(message.fields_by_name["value"], seen)
    if name in seen:  # a recursive message: its inner levels are left free-form
        return {"type": "object"}
    return _object_schema(message, (*seen, name))


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    out = dict(prop)
    out["type"] = [prop["type"], "null"]
    if "enum" in prop:  # JSON Schema checks enum too: null must be one of its values
        out["enum"] = [*prop["enum"], None]
    return out


def _is_map(field: Any) -> bool:
    message = field.message_type
    return bool(field.is_repeated and message is not None and message.GetOptions().map_entry)


def describe(field: Any) -> str:
    """A field's type as a .proto file spells it: ``int64``, ``repeated Item``, ``map<..>``."""
    if _is_map(field):
        entry = field.message_type.fields_by_name
        return f"map<{_single(entry['key'])}, {_single(entry['value'])}>"
    return f"repeated {_single(field)}" if field.is_repeated else _single(field)


def _single(field: Any) -> str:
    if field.type == _T.TYPE_ENUM:
        return f"enum {field.enum_type.full_name}"
    if field.message_type is not None:
        return str(field.message_type.full_name)
    return _TYPE_NAMES[field.type]


def proto_problems(writer: Descriptor, reader: Descriptor) -> list[str]:
    """Why data written as message ``writer`` cannot be read as message ``reader``; [] if it can.

    Fields are matched by number (names may differ; problems name the reader's field).
    A field only one side has is fine: the writer's is dropped, the reader's takes its
    default. A field both have must keep its meaning: the same cardinality (repeated, map
    or single), integers in one wire encoding with the writer's range inside the reader's,
    the same floating, string, bytes or bool type, enums whose writer numbers the reader
    names, and messages of the same kind (Timestamp, a wrapper, or another message) whose
    fields in turn pass these rules.
    """
    problems: list[str] = []
    _compare(writer, reader, "", "", problems, set())
    return problems


def _compare(writer: Any, reader: Any, names: str, numbers: str, problems: list[str],
             seen: set[tuple[str, str]]) -> None:
    pair = (writer.full_name, reader.full_name)
    if pair in seen:  # recursive messages: each pair of types is compared once
        return
    seen.add(pair)
    written = {f.number: f for f in writer.fields}
    for field in sorted(reader.fields, key=lambda f: f.number):
        old = written.get(field.number)
        if old is None:
            continue
        where = f"field '{names}{field.name}' ({numbers}{field.number})"
        reason = _field_problem(old, field)
        if reason is not None:
            problems.append(f"{where}: {reason}")
            continue
        old_message, new_message = old.message_type, field.message_type
        if old_message is not None and new_message is not None:
            if _is_map(field):
                old_message = old.message_type.fields_by_name["value"].message_type
                new_message = field.message_type.fields_by_name["value"].message_type
                if old_message is None or new_message is None:
                    continue
            _compare(old_message, new_message, f"{names}{field.name}.",
                     f"{numbers}{field.number}.", problems, seen)


def _field_problem(old: Any, new: Any) -> str | None:
    """What makes writer field ``old`` unreadable as reader field ``new``, on its own level."""
    both = f"{describe(old)} in the writer, {describe(new)} in the reader"
    if _is_map(old) != _is_map(new) or old.is_repeated != new.is_repeated:
        return f"{both}: the cardinality changed"
    if _is_map(old):
        old_key, new_key = (f.message_type.fields_by_name["key"] for f in (old, new))
        old_value, new_value = (f.message_type.fields_by_name["value"] for f in (old, new))
        reason = _value_problem(old_key, new_key) or _value_problem(old_value, new_value)
        return f"{both}: {reason}" if reason else None
    reason = _value_problem(old, new)
    return f"{both}: {reason}" if reason else None


def _value_problem(old: Any, new: Any) -> str | None:
    """Can one value of type ``old`` be read as type ``new``? None if so, else why not."""
    if old.type in _INT_ENCODING and new.type in _INT_ENCODING:
        return _int_problem(old.type, new.type)
    if old.type == _T.TYPE_ENUM and new.type == _T.TYPE_ENUM:
        known = {v.number for v in new.enum_type.values}
        missing = [f"{v.name} ({v.number})" for v in old.enum_type.values
                   if v.number not in known]
        return f"the reader's enum has no value for {', '.join(missing)}" if missing else None
    old_message, new_message = old.message_type, new.message_type
    if old_message is not None and new_message is not None:
        # Same kind: their fields are compared one level down.
        same = _message_kind(old_message) == _message_kind(new_message)
        return None if same else "a different kind of message"
    return None if old.type == new.type else "a different type"


def _int_problem(old: int, new: int) -> str | None:
    if _INT_ENCODING[old] != _INT_ENCODING[new]:
        return "the integers are encoded differently on the wire"
    low, high = _INT_RANGE[old]
    new_low, new_high = _INT_RANGE[new]
    if low < new_low or high > new_high:
        return "the writer's values do not all fit the reader's type"
    return None


def _message_kind(message: Any) -> str:
    """Messages decode in three shapes: a date-time string, a bare wrapped value, an object."""
    name = message.full_name
    if name == TIMESTAMP:
        return "timestamp"
    return "wrapper" if name in WRAPPERS else "object"

