"""The row's layout: the one owner of where each value sits in a row's tuple.

A row travels from a decoder to the sink as a plain tuple (one per event, in COPY order),
because a tuple is what asyncpg's COPY takes and building anything richer costs on the hot
path. Its layout is therefore a contract between every builder (the decoders of each wire
format, the generated row builder, tombstones) and every reader (the batch writer, the lane
that turns a refused row into a dead letter, the tombstone merge, the partition guard):

    (the event type's own columns ..., event_time, kafka_topic, kafka_partition,
     kafka_offset, kafka_timestamp, raw)

A tombstone carries its upsert key's columns in place of the event type's own columns, and
the same metadata tail. A mirror's own columns end with ``source_position`` (after
``deleted_at`` with soft deletes), and its delete carries its key's columns and
``source_position``; a mirror's truncate carries ``source_position`` alone.

The tail is declared once, in :data:`META`; its positions (counted from the end, so they
hold for rows and tombstones alike), the table's column names, the DDL, the generated
builder's return expression and the readers' accessors are all derived from that
declaration. Adding a metadata column is one line here, and a builder or reader
that was not told about it fails at start (:func:`tail_source` names the missing value),
never by reading the wrong field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Values = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class MetaColumn:
    """One column Weir fills on every row, after the event type's own columns."""

    name: str
    ddl: str  # the column's type and constraint in ``CREATE TABLE``
    doc: str

    @property
    def pg_type(self) -> str:
        """The column's PostgreSQL type, from its DDL (``timestamptz NOT NULL``)."""
        return self.ddl.removesuffix(" NOT NULL")

    @property
    def nullable(self) -> bool:
        """May the column hold NULL?"""
        return not self.ddl.endswith(" NOT NULL")


META: tuple[MetaColumn, ...] = (
    MetaColumn("event_time", "timestamptz NOT NULL",
               "the event's time field, else its Kafka timestamp; the partitioning key"),
    MetaColumn("kafka_topic", "text NOT NULL", "the record's topic"),
    MetaColumn("kafka_partition", "integer NOT NULL", "the record's partition"),
    MetaColumn("kafka_offset", "bigint NOT NULL", "the record's offset"),
    MetaColumn("kafka_timestamp", "timestamptz NOT NULL", "the record's Kafka timestamp"),
    MetaColumn("raw", "jsonb NOT NULL", "the whole event as JSON (as decoded, any format)"),
)
META_NAMES: tuple[str, ...] = tuple(m.name for m in META)
# Each metadata column's PostgreSQL type.
META_TYPES: Mapping[str, str] = {m.name: m.pg_type for m in META}
# The Kafka coordinates that identify a record: the key of a table without an id field.
COORDINATES = ("kafka_topic", "kafka_partition", "kafka_offset")

# Each metadata value's place from the end of a row (or a tombstone): derived, never typed.
POSITION: Mapping[str, int] = {m.name: i - len(META) for i, m in enumerate(META)}
EVENT_TIME = POSITION["event_time"]
TOPIC = POSITION["kafka_topic"]
PARTITION = POSITION["kafka_partition"]
OFFSET = POSITION["kafka_offset"]
KAFKA_TIMESTAMP = POSITION["kafka_timestamp"]
RAW = POSITION["raw"]


# A mirror's (``envelope: debezium``) own columns end with these, which Weir fills from the
# change event's envelope rather than from the row: ``deleted_at`` only with soft deletes.
SOURCE_POSITION = MetaColumn(
    "source_position", "bigint NOT NULL",
    "a mirror's: the change's position in its source's log, which orders a row's versions")
DELETED_AT = MetaColumn(
    "deleted_at", "timestamptz",
    "a mirror's with soft deletes: when the source deleted the row, null while it exists")


def mirrored(values: Values, position: int, event_time: int) -> Values:
    """A mirror's row with its change's source position (the last own column) and its
    event time (the source's commit time) in place."""
    return (*values[:EVENT_TIME - 1], position, event_time, *values[EVENT_TIME + 1:])


def columns(own: Sequence[str]) -> tuple[str, ...]:
    """A table's columns in COPY order: the event type's own, then the metadata tail."""
    return (*own, *META_NAMES)


def tail(**values: Any) -> Values:
    """The metadata tail from its values by name; raises if one is missing or unknown.

    For builders off the hot path (the generic row builder, tombstones). The generated
    builder inlines the same tuple through :func:`tail_source`.
    """
    if values.keys() != set(META_NAMES):
        raise TypeError(f"a row's metadata is exactly {list(META_NAMES)}, "
                        f"got {sorted(values)}")
    return tuple(values[name] for name in META_NAMES)


def tail_source(expressions: Mapping[str, str]) -> str:
    """The tail as Python source for a generated builder: ``expressions`` by column name."""
    missing = [name for name in META_NAMES if name not in expressions]
    if missing or len(expressions) != len(META):
        raise TypeError(f"a generated row builder must give exactly {list(META_NAMES)}; "
                        f"missing {missing}, got {sorted(expressions)}")
    return ", ".join(expressions[name] for name in META_NAMES)


def topic_of(values: Values) -> str:
    """The Kafka topic a row (or tombstone) came from."""
    topic: str = values[TOPIC]
    return topic


def partition_of(values: Values) -> int:
    """The Kafka partition a row (or tombstone) came from."""
    partition: int = values[PARTITION]
    return partition


def offset_of(values: Values) -> int:
    """The Kafka offset a row (or tombstone) came from."""
    offset: int = values[OFFSET]
    return offset


def position_of(values: Values) -> int:
    """A mirror's row's (or delete's) source position: its last own column."""
    position: int = values[EVENT_TIME - 1]
    return position


def event_time_of(values: Values) -> Any:
    """The row's event time as the row holds it (PostgreSQL's microseconds)."""
    return values[EVENT_TIME]


def raw_of(values: Values) -> bytes | None:
    """The row's ``raw`` column: the event as JSON bytes (None for a tombstone)."""
    raw: bytes | None = values[RAW]
    return raw
