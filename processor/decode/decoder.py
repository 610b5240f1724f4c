"""Bytes to rows: size check, orjson, routing to an event type, schema, transforms, row shape.

Each failure raises :class:`EventRejected` with a stable ``reason`` code; the caller sends that
one event to the dead-letter path. Nothing here awaits: it is pure CPU work per record.

The usual valid event takes two fast paths, each one-sided: the schema's msgspec type
(``fastcheck.py``) says *valid, and of the schema's own shape* or *not sure*; the generated
row builder (``rows.py``) returns the row or leaves the event to the generic ``_row``.
Whatever is not sure takes the step-by-step path, which decides every rejection, so the
reasons and messages are those of the limits, fastjsonschema and the converters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fastjsonschema
import orjson

from processor.contracts import Column, Contract
from processor.core.errors import EventRejected
from processor.core.pgtime import UTC_MILLIS, kafka_micros
from processor.core.records import DELETE, TRUNCATE, ChildRows, Delete, Header, Truncate
from processor.core.row_layout import mirrored, tail
from processor.core.settings import FRAMED_FORMATS, Settings
from processor.core.stalls import Stalls
from processor.decode.children import ChildBuilder, compile_children
from processor.decode.converters import (
    BACKSLASH,
    Converter,
    check_text,
    converter_for,
    why_unfit,
)
from processor.decode.debezium import DebeziumEnvelope
from processor.decode.fastcheck import Check, FastCheck, compile_fast_check
from processor.decode.framed import SCHEMA_TYPES, FramedTopic, SchemaPending, render
from processor.decode.limits import Limits
from processor.decode.mapped import Mapped, compile_mapped
from processor.decode.quickcheck import QuickCheck, compile_quick_check
from processor.decode.rawjson import check_raw
from processor.decode.rows import RowBuilder, compile_row_builder
from processor.decode.tombstones import TombstoneKey
from processor.registry.schemas import SchemaBook

if TYPE_CHECKING:  # the transform stage's runtime is handed in, loaded once at start
    from processor.transform.chain import Chain

# (event_type, row values), and the child rows when the event type has child tables, or
# DELETE when the values are the key of a row to delete (a Debezium delete), or TRUNCATE
# when they are a mirror's truncate (processor.core.row_layout lays out both).
Decoded = tuple[str, tuple[Any, ...]] | tuple[
    str, tuple[Any, ...], ChildRows | Delete | Truncate]


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one event type becomes a row: validate, transform, convert."""

    event_type: str
    contract: Contract
    quick_check: QuickCheck | None  # True: valid; False: ask the contract's validator
    # The usual event's one test: valid, and of the schema's own shape (no other fields),
    # which together with a size up to fast_bytes proves every shape limit holds.
    exact_check: Check | None
    fast_bytes: int  # -1 when the schema's shape proves nothing
    transform: Chain | None
    names: tuple[str, ...]
    texts: tuple[int, ...]  # indexes of the text columns whose values need checking
    converters: tuple[tuple[int, Converter], ...]  # (column index, conversion), not text
    mapped: tuple[tuple[int, Mapped], ...]  # (column index, its value from its path)
    time_index: int | None
    # The mapped columns an event must give a value (the event time, the upsert key's):
    # (column index, what it is), absent in an event a dead letter.
    required: tuple[tuple[int, str], ...]
    build: RowBuilder  # the usual row in one call; raises for the generic _row to decide
    children: ChildBuilder | None  # the child tables' rows, from the event and its row


def _plan(event_type: str, contract: Contract, transform: Chain | None, limits: Limits,
          merge: bool = False, upsert_key: Sequence[str] = ()) -> _Plan:
    columns = contract.columns
    names = tuple(c.name for c in columns)
    texts = tuple(i for i, c in enumerate(columns) if c.pg_type == "text" and c.mapping is None
                  and (transform is not None or not _schema_string(contract, c.name)))
    converters = tuple((i, converter_for(c.pg_type)) for i, c in enumerate(columns)
                       if c.pg_type != "text" and c.mapping is None)
    settings = {i: c.mapping for i, c in enumerate(columns) if c.mapping is not None}
    mapped = tuple((i, compile_mapped(column, event_type)) for i, column in settings.items())
    time_index = next((i for i, c in enumerate(columns) if c.name == contract.time_field),
                      None)
    required = tuple(_required(columns, time_index, upsert_key))
    fast = compile_fast_check(contract.schema)
    return _Plan(
        event_type, contract, fast.lenient if fast else compile_quick_check(contract.schema),
        fast.exact if fast else None, _fast_bytes(fast, limits), transform, names, texts,
        converters, mapped, time_index, required,
        compile_row_builder(names, [c.pg_type for c in columns], texts, dict(converters),
                            time_index, {i: (settings[i], m) for i, m in mapped},
                            [i for i, _ in required], event_type),
        compile_children(contract.children, names, event_type, keep_absent=merge),
    )


def _required(columns: Sequence[Column], time_index: int | None, upsert_key: Sequence[str]
              ) -> Iterator[tuple[int, str]]:
    """The mapped columns that may not be null, and what each is."""
    for i, column in enumerate(columns):
        if column.mapping is None:
            continue
        if i == time_index:
            yield i, "the time field"
        elif column.name in upsert_key:
            yield i, "part of the upsert key"


def _fast_bytes(fast: FastCheck | None, limits: Limits) -> int:
    """Up to how many bytes an event of the schema's own shape is within every limit.

    A string has at most as many characters as bytes; an array of *n* items takes at least
    2*n - 1 bytes, so its length is bounded by the bytes where the schema gives no maxItems.
    Depth and fields are the schema's own, checked once here.
    """
    shape = fast.shape if fast else None
    if shape is None or shape.depth is None or shape.depth > limits.max_depth or (
            shape.fields > limits.max_fields):
        return -1
    if shape.items is None or shape.items > limits.max_array:
        return min(limits.max_string, 2 * limits.max_array - 1)
    return limits.max_string


def _schema_string(contract: Contract, name: str) -> bool:
    """Does the schema itself make the property a string (or null)?

    Such a value, straight from orjson, fits text once :func:`check_raw` passed the bytes:
    orjson refuses unpaired surrogates, check_raw refuses NUL. Only a transform's output, or
    a property mapped to text by ``x-weir-column-type``, needs checking per event.
    """
    prop = contract.schema["properties"][name]
    types = prop.get("type")
    concrete = {types} if isinstance(types, str) else set(types or []) - {"null"}
    return concrete == {"string"} and "x-weir-column-type" not in prop


class Decoder:
    """Turns one Kafka record's value into ``(event_type, row values)``."""

    def __init__(self, settings: Settings, contracts: dict[str, Contract],
                 transforms: Mapping[str, Chain | None], book: SchemaBook | None = None,
                 evolving: frozenset[str] = frozenset()) -> None:
        """``evolving``: the mirrors whose tables Weir evolves itself (``cdc.mirrors``): a
        change with a new field waits for its column (:class:`ColumnsPending`)."""
        self._max_bytes = settings.pipeline.max_message_bytes
        self._limits = Limits.from_settings(settings.pipeline)
        self._plans = {name: _plan(name, contract, transforms.get(name), self._limits,
                                   settings.event_types[name].update_mode == "merge",
                                   settings.event_types[name].upsert_key)
                       for name, contract in contracts.items()}
        self._topic_type = {t.name: t.event_type for t in settings.topics}
        self._topic_plan = {topic: self._plans[name] for topic, name in self._topic_type.items()
                            if name is not None}
        self._topic_field = {t.name: t.type_field for t in settings.topics}
        self._tombstones = {name: TombstoneKey(contract, settings.event_types[name])
                            for name, contract in contracts.items()}
        self._envelopes = {t.name: (t.event_type, DebeziumEnvelope(
            contracts[t.event_type], settings.event_types[t.event_type],
            t.event_type in evolving))
            for t in settings.topics if t.event_type in settings.debezium_types}
        self._book = book
        # Without a book (no registry configured: a tool that reads JSON topics only), the
        # framed topics cannot be read; weir run always has one when a topic is framed.
        # A mirror that evolves by itself vets each Avro writer for columns it has not.
        self._framed = {t.name: FramedTopic(
            t, book, _reader(t.format, contracts[t.event_type]),
            self._envelopes[t.name][1].vet_writer
            if t.name in self._envelopes and t.event_type in evolving else None)
            for t in settings.topics if t.format in FRAMED_FORMATS
            and book is not None and t.event_type is not None}

    def tombstone(self, topic: str, partition: int, offset: int, timestamp_ms: int,
                  key: bytes | None) -> tuple[str, tuple[Any, ...]] | None:
        """A record without a value: the key values of the row it deletes (with the
        metadata columns), None if tombstones are ignored, or raise (a dead letter)."""
        event_type = self._topic_type.get(topic)
        if event_type is None:
            raise EventRejected("empty_value", "decode", "the record has no value (a "
                                "tombstone) on a topic routed by a field: no event type")
        mapping = self._tombstones[event_type]
        if mapping.mode == "ignore":
            return None
        if mapping.mode != "delete":
            raise EventRejected("empty_value", "decode", "the record has no value (a "
                                "tombstone)")
        return event_type, _key_row(mapping.key_values(key), topic, partition, offset,
                                    timestamp_ms)

    def event_type_of(self, topic: str, event: dict[str, Any]) -> str:
        """The event type of a decoded event: fixed per topic, or named by a field."""
        fixed = self._topic_type.get(topic)
        if fixed is not None:
            return fixed
        field = self._topic_field.get(topic)
        name = event.get(field) if field else None
        if not isinstance(name, str) or name not in self._plans:
            raise EventRejected(
                "unknown_event_type", "decode",
                f"field {field!r} is {name!r}, not one of {sorted(self._plans)}",
            )
        return name

    def decode(
        self, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes | None,
        headers: Sequence[Header] = (), key: bytes | None = None,
    ) -> Decoded | None:
        """Return ``(event_type, values)`` (and its child rows when its type has child
        tables), None if a transform dropped the event, or raise.

        A JSON value; ``headers`` and ``key`` are read by mapped columns that name them."""
        if value is None:
            raise EventRejected("empty_value", "decode", "the record has no value (tombstone)")
        if len(value) > self._max_bytes:
            raise _too_large(len(value), self._max_bytes)
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise EventRejected("decode_error", "decode", f"not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise EventRejected(
                "not_an_object", "decode", f"expected a JSON object, got {type(event).__name__}"
            )
        if topic in self._envelopes:
            return self._change(topic, partition, offset, timestamp_ms, event, key, headers)
        return self._event(topic, partition, offset, timestamp_ms, value, event, key, headers)

    def _change(self, topic: str, partition: int, offset: int, timestamp_ms: int,
                event: dict[str, Any], key: bytes | None, headers: Sequence[Header]
                ) -> Decoded | None:
        """A Debezium change event: its row (``after``) as any event's, with its source
        position and commit time; the delete of its key's row; a truncate; or None (a
        message, an ignored truncate: no row changes)."""
        event_type, envelope = self._envelopes[topic]
        change = envelope.change(event)
        if change.what == "skip":
            return None
        # The source's commit time is the row's event time; the Kafka timestamp if it has
        # none (or one PostgreSQL cannot hold).
        source_ms = change.ts_ms if change.ts_ms is not None and (
            UTC_MILLIS[0] <= change.ts_ms <= UTC_MILLIS[1]) else timestamp_ms
        if change.what == "upsert":
            assert change.record is not None
            # raw is the row as the source has it, not the envelope (schema and all)
            decoded = self._event(topic, partition, offset, timestamp_ms,
                                  render(change.record), change.record, key, headers)
            if decoded is None:
                return None
            row = mirrored(decoded[1], change.position, kafka_micros(source_ms))
            return (decoded[0], row) if len(decoded) == 2 else (decoded[0], row, decoded[2])
        head = (change.position,) if change.record is None else (
            *envelope.key_values(change.record), change.position)
        row = _key_row(head, topic, partition, offset, timestamp_ms, source_ms)
        return event_type, row, DELETE if change.what == "delete" else TRUNCATE

    def decode_framed(
        self, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes | None,
        headers: Sequence[Header] = (), key: bytes | None = None,
    ) -> Decoded | None:
        """:meth:`decode` for a value in the Schema Registry framing (Avro, Protobuf, JSON).

        Raises :class:`~processor.decode.framed.SchemaPending` when its schema id has not
        been fetched yet: the caller fetches it and asks again."""
        if value is None:
            raise EventRejected("empty_value", "decode", "the record has no value (tombstone)")
        if len(value) > self._max_bytes:
            raise _too_large(len(value), self._max_bytes)
        event, body = self._framed[topic].event(value, headers)
        if event is None:  # JSON through the registry: the payload is the event's JSON
            return self.decode(topic, partition, offset, timestamp_ms, value[body:], headers,
                               key)
        if topic in self._envelopes:  # a Debezium change event in Avro
            return self._change(topic, partition, offset, timestamp_ms, event, key, headers)
        return self._event(topic, partition, offset, timestamp_ms, render(event), event, key,
                           headers)

    def json_view(self, topic: str, value: bytes | None, headers: Sequence[Header] = ()
                  ) -> bytes | None:
        """A framed record's event as the JSON its row's ``raw`` holds (the columnar path
        reads that), or None when the row path must decide the record: no value, too large,
        or any error of its framing or payload. Raises
        :class:`~processor.decode.framed.SchemaPending` like :meth:`decode_framed`."""
        if value is None or len(value) > self._max_bytes:
            return None
        try:
            event, body = self._framed[topic].event(value, headers)
            # JSON through the registry is its payload; the rest, their event rendered as
            # decode_framed renders it.
            return value[body:] if event is None else render(event)
        except SchemaPending:
            raise
        except Exception:  # noqa: BLE001 - the row path reads it again and says what it is
            return None

    def framed_topic(self, topic: str) -> FramedTopic:
        """The framed ``topic``'s reader (its schema ids' readers, by id)."""
        return self._framed[topic]

    def is_rendered(self, topic: str) -> bool:
        """Is ``topic``'s JSON view rendered here from its decoded records (Avro, Protobuf),
        not the producer's own JSON (JSON through the registry)?"""
        framed = self._framed.get(topic)
        return framed is not None and framed.format != "jsonschema"

    def is_framed(self, topic: str) -> bool:
        """Are ``topic``'s values in the Schema Registry framing?"""
        return topic in self._framed

    async def attempt_schema(self, schema_id: int, stalls: Stalls | None) -> bool:
        """Ask the registry once for a schema id: True once the book knows what to do with
        it, False if the registry did not answer (``stalls`` then says so)."""
        if self._book is None:
            raise RuntimeError("no schema registry is configured")
        return await self._book.attempt(schema_id, stalls)

    async def fetch_schema(self, schema_id: int, stalls: Stalls | None) -> None:
        """Fetch a schema id's schema into the book; waits, stalled, while the registry is
        away."""
        if self._book is None:
            raise RuntimeError("no schema registry is configured")
        await self._book.ensure([schema_id], stalls)

    def _event(
        self, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes,
        event: dict[str, Any], key: bytes | None = None, headers: Sequence[Header] = (),
    ) -> Decoded | None:
        """A decoded event (``value`` its JSON) checked, transformed and built into a row."""
        plan = self._topic_plan.get(topic)
        # The usual event passes one test: of its type's own shape and small enough that no
        # limit can fail, without escapes (so no NUL), valid. Anything else is checked step
        # by step, in the order that picks its reason.
        if plan is None or BACKSLASH in value or len(value) > plan.fast_bytes or (
                plan.exact_check is None or not plan.exact_check(event)):
            plan = self._plans[self._check(topic, value, event)]
        if plan.transform is not None:
            transformed = plan.transform(event)
            if transformed is None:
                return None
            event = transformed
        event_type = plan.event_type
        try:
            row = plan.build(event, topic, partition, offset, timestamp_ms, value, key, headers)
        except Exception:  # noqa: BLE001 - any doubt: the generic builder decides, as before
            row = self._row(plan, event, topic, partition, offset, timestamp_ms, value, key,
                            headers)
        if plan.children is None:
            return event_type, row
        return event_type, row, plan.children(event, row, key, headers, topic, timestamp_ms)

    def _check(self, topic: str, value: bytes, event: dict[str, Any]) -> str:
        """The shape limits, the raw bytes, the event type and the schema, in that order:
        the event type's name, or raise."""
        if not self._limits.fits_raw(value):
            self._limits.check(event)
        if BACKSLASH in value:  # a NUL escape needs a backslash: one memchr, no call
            check_raw(value, event)
        event_type = self._topic_type.get(topic) or self.event_type_of(topic, event)
        plan = self._plans[event_type]
        if plan.quick_check is None or not plan.quick_check(event):
            try:
                plan.contract.validate(event)
            except fastjsonschema.JsonSchemaValueException as exc:
                raise EventRejected(
                    "schema_violation", "validate",
                    f"{plan.contract.event_type} v{plan.contract.version}: {exc.message}",
                ) from None
        return event_type

    def _row(
        self, plan: _Plan, event: dict[str, Any], topic: str, partition: int, offset: int,
        timestamp_ms: int, raw: bytes, key: bytes | None = None, headers: Sequence[Header] = (),
    ) -> tuple[Any, ...]:
        values = list(map(event.get, plan.names))
        i = 0
        # Both loops inline in the one call per event: they run for every column.
        try:
            for i in plan.texts:
                value = values[i]
                # The usual text passes without a call: ASCII holds no surrogate.
                if (type(value) is not str or "\x00" in value or not value.isascii()) and (
                        value is not None):
                    check_text(value)
            for i, conv in plan.converters:
                value = values[i]
                if value is not None:
                    values[i] = conv(value)
            for i, value_of in plan.mapped:
                values[i] = value_of(event, key, headers, topic, timestamp_ms)
        except (ValueError, TypeError, OverflowError) as exc:  # Unfit, or a transform's value
            raise _conversion_error(plan.names[i], exc) from None
        if not UTC_MILLIS[0] <= timestamp_ms <= UTC_MILLIS[1]:
            raise _timestamp_refused(timestamp_ms)
        kafka_ts = kafka_micros(timestamp_ms)
        event_time = kafka_ts if plan.time_index is None else values[plan.time_index]
        for i, what in plan.required:
            if values[i] is None:  # its path (key, header) found nothing
                raise EventRejected("conversion_error", "transform",
                                    f"field {plan.names[i]!r}: {what} is absent (or null) "
                                    "and has no default")
        return (*values, *tail(event_time=event_time, kafka_topic=topic,
                               kafka_partition=partition, kafka_offset=offset,
                               kafka_timestamp=kafka_ts, raw=raw))


def _reader(fmt: str, contract: Contract) -> Any:
    """The contract's reader schema, when it is a registry subject of the topic's format."""
    return contract.reader if contract.registry_type == SCHEMA_TYPES[fmt] else None


def _key_row(key: tuple[Any, ...], topic: str, partition: int, offset: int,
             timestamp_ms: int, event_ms: int | None = None) -> tuple[Any, ...]:
    """The row of a record that deletes its key's row (or a mirror's truncate): ``key``
    (the key's values, and a mirror's source position) and the metadata columns (the
    Kafka timestamp as the event time unless ``event_ms`` is given, no raw)."""
    if not UTC_MILLIS[0] <= timestamp_ms <= UTC_MILLIS[1]:
        raise _timestamp_refused(timestamp_ms)
    kafka_ts = kafka_micros(timestamp_ms)
    event_time = kafka_ts if event_ms is None else kafka_micros(event_ms)
    return (*key, *tail(event_time=event_time, kafka_topic=topic, kafka_partition=partition,
                        kafka_offset=offset, kafka_timestamp=kafka_ts, raw=None))


def _too_large(size: int, limit: int) -> EventRejected:
    return EventRejected("too_large", "decode",
                         f"{size} bytes is over pipeline.max_message_bytes ({limit})")


def _conversion_error(field: str, exc: Exception) -> EventRejected:
    return EventRejected("conversion_error", "transform",
                         f"field {field!r}: {why_unfit(exc)}")


def _timestamp_refused(timestamp_ms: int) -> EventRejected:
    # A producer may set any; as the row's kafka_timestamp (and its event_time when there
    # is no time field) it would fail the sink's partition routing.
    return EventRejected(
        "conversion_error", "decode", f"the record's Kafka timestamp ({timestamp_ms} ms "
        "since 1970) is outside the years 1 to 9999 in UTC")
