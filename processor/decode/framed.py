"""Framed values (Avro, Protobuf, JSON through the Schema Registry) to JSON-shaped events.

One :class:`FramedTopic` per topic composes the framing (:mod:`.formats.framing`) with the
topic's payload format (:mod:`.formats.avro`, :mod:`.formats.protobuf`, JSON), and keeps one
reader per schema id, built the first time the id is met from the process's
:class:`~processor.registry.schemas.SchemaBook`. Every format ends in the same event the
JSON path makes, so validation, transforms, column fit and dead letters are the decoder's,
written once.

A record whose schema id is not in the book yet raises :class:`SchemaPending`, never a dead
letter: the decode stage fetches the schema (waiting, stalled, while the registry is away)
and decodes the record again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from processor.core.errors import EventRejected
from processor.core.records import Header
from processor.core.settings import TopicSettings
from processor.decode.formats import SchemaMismatch
from processor.decode.formats.avro import AvroReader, schema_document
from processor.decode.formats.avro_columns import AvroColumns, Unsupported
from processor.decode.formats.framing import MAGIC, PREFIX, read_frame
from processor.registry.schemas import Known, SchemaBook

# A reader takes the whole value and where its payload starts (after the framing).
Reader = Callable[[bytes, int], Any]
# The registry's name for the schema type each framed format needs.
SCHEMA_TYPES = {"avro": "AVRO", "protobuf": "PROTOBUF", "jsonschema": "JSON"}
_MAGIC_BYTE = bytes([MAGIC])


class SchemaPending(Exception):
    """The record names a schema id the book has not fetched yet."""

    def __init__(self, schema_id: int) -> None:
        self.schema_id = schema_id
        super().__init__(f"schema id {schema_id} is not fetched yet")


def _number(value: Any) -> orjson.Fragment:
    # A decimal stays exact in raw: its digits as a JSON number, not a rounded float.
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def render(event: dict[str, Any]) -> bytes:
    """The event as JSON bytes for ``raw`` (decimals exact), or raise its dead letter."""
    try:
        # orjson's bytes sit in a 4 KiB allocation whatever their length, and a row keeps
        # its raw until the batch commits: an exact-size copy keeps the row small.
        return bytes(memoryview(orjson.dumps(event, default=_number)))
    except orjson.JSONEncodeError as exc:
        raise EventRejected("conversion_error", "decode",
                            f"the decoded event cannot be written as JSON: {exc}") from None


class FramedTopic:
    """One topic's framed values, read with the schema each names."""

    def __init__(self, topic: TopicSettings, book: SchemaBook, reader: Any = None,
                 vet: Callable[[Any], None] | None = None) -> None:
        """``vet``: told each Avro writer's schema document before its reader is built; it
        may raise to hold the records of that id (a mirror's new columns)."""
        self.format = topic.format
        self.subject = topic.value_subject
        self._book = book
        # The contract's own schema when it is a registry subject of this format: every
        # writer's schema resolves to it.
        self._contract_reader = reader
        self._vet = vet
        self._readers: dict[int, Reader] = {}
        self._columns: dict[int, AvroColumns | None] = {}  # batch readers, by schema id
        self._limit = 1024  # readers kept: one per schema id seen on the topic

    def event(self, value: bytes, headers: Sequence[Header]) -> tuple[Any, int]:
        """The record's decoded value and where its payload starts; raises its dead letter
        or :class:`SchemaPending`. For ``jsonschema`` the value is None: the payload is
        JSON."""
        if not headers and value[:1] == _MAGIC_BYTE and len(value) >= PREFIX:
            # The usual record, inline: read_frame decides the rest and says what is wrong.
            schema_id, body = int.from_bytes(value[1:PREFIX], "big"), PREFIX
        else:
            frame = read_frame(value, headers)
            schema_id, body = frame.schema_id, frame.body
        reader = self._readers.get(schema_id)
        if reader is None:
            reader = self._reader(schema_id)
        return reader(value, body), body

    def columns(self, schema_id: int, read: Any) -> AvroColumns | None:
        """The batch reader of an Avro schema id's records for a contract read as ``read``
        (an Arrow schema), or None when its records are read one by one: another format,
        an id the topic refuses, a contract that is itself a registry schema (its
        resolution is the per-record reader's), a schema the batch reader does not cover.
        Raises :class:`SchemaPending` for an id not fetched yet."""
        if schema_id in self._columns:
            return self._columns[schema_id]
        known = self._book.get(schema_id)
        if known is None:
            raise SchemaPending(schema_id)
        columns = None
        if self.format == "avro" and self._contract_reader is None:
            try:
                self._build(known)  # the same refusals as the record's own reader
                columns = AvroColumns(schema_document(known.parsed), read)
            except (EventRejected, Unsupported):
                columns = None
        if len(self._columns) >= self._limit:
            self._columns.clear()
        self._columns[schema_id] = columns
        return columns

    def _reader(self, schema_id: int) -> Reader:
        known = self._book.get(schema_id)
        if known is None:
            raise SchemaPending(schema_id)
        if self._vet is not None and self.format == "avro" and known.parsed is not None:
            self._vet(schema_document(known.parsed))  # raised: no reader kept, asked again
        try:
            reader = self._build(known)
        except EventRejected as exc:
            if exc.reason not in _SETTLED:
                raise
            # The id's schema never changes, so neither does this answer: a flood of such
            # events must not parse and compare the schemas once each.
            reader = _refusal(exc)
        if len(self._readers) >= self._limit:
            self._readers.clear()
        self._readers[schema_id] = reader
        return reader

    def _build(self, known: Known) -> Reader:
        if known.schema is None:
            raise EventRejected("unknown_schema_id", "decode",
                                f"schema id {known.schema_id}: {known.problem}")
        if known.problem is not None:
            raise EventRejected("bad_schema", "decode", known.problem)
        wanted = SCHEMA_TYPES[self.format]
        if known.schema.schema_type != wanted:
            raise EventRejected(
                "wrong_schema_type", "decode",
                f"schema id {known.schema_id} is {known.schema.schema_type}, but the topic is "
                f"read as {self.format} ({wanted})")
        if self.subject not in known.subjects:
            raise EventRejected(
                "wrong_subject", "decode",
                f"schema id {known.schema_id} is registered under {list(known.subjects)}, "
                f"not under this topic's subject {self.subject!r}")
        try:
            if self.format == "avro":
                return AvroReader(known.parsed, self._contract_reader).decode
            if self.format == "protobuf":
                from processor.decode.formats.protobuf import ProtobufTopicReader
                proto = ProtobufTopicReader(known.parsed, self._contract_reader).decode
                return lambda value, start: proto(memoryview(value)[start:])
        except SchemaMismatch as exc:
            raise EventRejected(
                "schema_mismatch", "decode",
                f"schema id {known.schema_id} cannot be read as the event type's contract: "
                f"{exc}") from None
        return _no_reader


# Refusals that follow from the id's schema alone (not from the registry's state).
_SETTLED = frozenset({"bad_schema", "wrong_schema_type", "schema_mismatch"})


def _refusal(exc: EventRejected) -> Reader:
    def refuse(value: bytes, start: int) -> Any:
        raise EventRejected(exc.reason, exc.stage, str(exc))
    return refuse


def _no_reader(value: bytes, start: int) -> None:
    # JSON through the registry: the payload is the event's JSON, read by the JSON path.
    return None
