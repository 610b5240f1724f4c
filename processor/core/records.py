"""The units that travel between stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

TopicPartitionKey = tuple[str, int]
# Per child table of an event type, the staged rows of its items (processor.core.child_layout);
# None: an absent array that keeps the stored items (update_mode merge).
ChildRows = tuple["list[tuple[Any, ...]] | None", ...]


class Delete:
    """The mark of a decoded record that deletes its key's row (a Debezium delete): its
    values are the key's, with the metadata columns, as a tombstone's."""


DELETE = Delete()


class Truncate:
    """The mark of a decoded record that empties its mirror up to its source position (a
    Debezium truncate): its values are that position, with the metadata columns."""


TRUNCATE = Truncate()
Header = tuple[str, bytes | None]  # Kafka allows a header without a value: aiokafka's None


def last_header(headers: Sequence[Header], name: str) -> bytes | None:
    """The value of the last header named ``name``, as Kafka's ``lastHeader``; None when
    there is none, or it has no value."""
    found = None
    for h_name, h_value in headers:
        if h_name == name:
            found = h_value
    return found


@dataclass(slots=True, eq=False)
class Chunk:
    """The records one fetch returned for one partition: offsets ``first`` to ``end - 1``.

    ``pending`` counts the chunk's events not yet safely written; the partition's watermark
    cannot pass a chunk until it reaches zero. Identity equality: chunks are dict keys.
    """

    tp: TopicPartitionKey
    first: int
    end: int
    pending: int = 0
    first_timestamp_ms: int | None = None


@dataclass(slots=True)
class Row:
    """A valid event, transformed and shaped as one row of its event type's table.

    ``values`` is laid out as :mod:`processor.core.row_layout` declares; read its metadata through
    that module's accessors, never by position.
    """

    rows: ClassVar[int] = 1  # the events it stands for (a Block stands for many)

    event_type: str
    values: tuple[Any, ...]
    chunk: Chunk
    nbytes: int
    key: bytes | None
    headers: list[Header]
    timestamp_ms: int
    # A tombstone that deletes its key's row; ``values`` is then the key's column values
    # followed by the metadata columns (event_time … raw, raw being None).
    tombstone: bool = False
    # The record's value exactly as it came from Kafka (a framed Avro record, say), which a
    # dead letter must carry; ``raw`` in ``values`` is the event as JSON. None: a tombstone.
    value: bytes | None = None
    # The event's child rows (its arrays exploded), None when its type has no child table.
    children: ChildRows | None = None
    # A mirror's truncate; ``values`` is then its source position and the metadata columns.
    truncate: bool = False


@dataclass(slots=True)
class DeadLetter:
    """An event that cannot be written to its table, with the original bytes and why."""

    rows: ClassVar[int] = 1
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    stage: str
    reason: str
    error: str
    event_type: str | None
    chunk: Chunk
    nbytes: int = field(default=0)
    attempts: int = 1  # write attempts that ended in this dead letter
    # Where it is safely kept ("topic", "table", "spool"), or None while it is not yet:
    # a retried batch transaction must not place it a second time.
    place: str | None = None


@dataclass(slots=True, eq=False)
class Block:
    """Events of one partition's fetch decoded together by the columnar path
    (:mod:`processor.decode.columnar`): their rows as columns, laid out as the table's
    columnar stage (:meth:`processor.schema.tables.TableSpec.columnar_columns`).

    It stands for ``rows`` events wherever a :class:`Row` stands for one: in the lanes'
    bounds, the partition's pending count, the metrics. A batch that must be bisected (a
    row the table refused) first turns it back into rows by ``expand``, the row path over
    the same records.
    """

    key: ClassVar[bytes | None] = None  # its lane is its partition's (processor.partition)

    event_type: str
    columns: Any  # a pyarrow.Table; the core does not import pyarrow
    chunk: Chunk
    rows: int
    nbytes: int
    timestamps_ms: list[int]  # each row's Kafka timestamp, for the end-to-end latency
    event_times: tuple[int, int]  # the rows' least and greatest event time (timestamptz µs)
    expand: Callable[[], list[Row | DeadLetter]]


Item = Row | DeadLetter | Block
