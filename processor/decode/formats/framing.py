"""The Confluent wire framing: which registered schema a record's value was written with.

A framed value is a magic byte ``0``, the schema id as 4 bytes big-endian, then the payload
(Protobuf's payload starts with its message-index array: that is the Protobuf format's to
read). Newer Confluent clients can put the same 5 bytes in a ``__value_schema_id`` header
instead, the value then being the bare payload; the header wins, as in their deserializer.

Magic byte ``1`` (a 16-byte schema GUID instead of an id, in the value or the header) is
refused with its own reason: resolving a GUID needs the registry's ``/schemas/guids`` API,
which Confluent Platform 8 serves and Apicurio 2.4 (the registry Weir is tested against)
does not, so Weir cannot promise to read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from processor.core.errors import EventRejected
from processor.core.records import Header
from processor.decode.converters import show

HEADER = "__value_schema_id"
MAGIC = 0
MAGIC_GUID = 1
PREFIX = 5  # magic byte and 4-byte id


@dataclass(frozen=True, slots=True)
class Frame:
    """Where a value's schema id and payload are."""

    schema_id: int
    body: int  # the payload's first byte in the value


def schema_id_header(headers: Sequence[Header]) -> bytes | None:
    """The ``__value_schema_id`` header's value, if the record carries one."""
    for name, value in headers:
        if name == HEADER:
            return value if value is not None else b""
    return None


def read_frame(value: bytes, headers: Sequence[Header]) -> Frame:
    """The schema id and the payload's offset, or raise the record's dead letter."""
    header = schema_id_header(headers) if headers else None
    if header is not None:
        return Frame(_schema_id(header, "the __value_schema_id header"), 0)
    return Frame(_schema_id(value, "the value"), PREFIX)


def peek_schema_id(value: bytes | None, headers: Sequence[Header]) -> int | None:
    """The schema id a record names, or None if it names none (its decode will say why)."""
    header = schema_id_header(headers) if headers else None
    data = header if header is not None else value
    if data is None or len(data) < PREFIX or data[0] != MAGIC:
        return None
    return int.from_bytes(data[1:PREFIX], "big")


def _schema_id(data: bytes, where: str) -> int:
    if len(data) >= 1 and data[0] == MAGIC_GUID:
        raise EventRejected(
            "unsupported_framing", "decode",
            f"{where} starts with magic byte 1 (a schema GUID): Weir reads schema ids "
            "(magic byte 0); configure the producer's serializer to write ids")
    if len(data) < PREFIX or data[0] != MAGIC:
        raise EventRejected(
            "bad_framing", "decode",
            f"{where} is not in the Schema Registry framing (magic byte 0, then a 4-byte "
            f"schema id): it starts {show(bytes(data[:PREFIX]))}")
    return int.from_bytes(data[1:PREFIX], "big")
