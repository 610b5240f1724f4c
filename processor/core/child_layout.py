"""A child table's rows: the one owner of where each value sits in a child row's tuple.

An event type may explode an array of its events (an order's line items) into a child
table, one row per item (``event_types.<name>.children``). A child row carries the
parent's key, so an analyst joins on it, and the item's position, which with that key is
the child's primary key:

    (the parent's key columns ..., [event_time], <index_column>, the item's columns ...)

``event_time`` is always there (the partitioning key of a partitioned parent, which its
children share; a time to filter on without a join): in the parent's key already when the
parent is partitioned, else added after it.

The decoder builds, and the writer copies into the child's staging table, the record the
item came from after the parent's part (``kafka_topic, kafka_partition, kafka_offset``,
those the parent's key does not hold already), so that only the items of the event the
parent's row now holds are written.

The parent's key is decided here too (:func:`table_key`), since the parent's table and its
children must agree on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from processor.core.row_layout import COORDINATES, META_TYPES, POSITION
from processor.core.settings import ChildTableSettings, EventTypeSettings

ORIGIN = ("kafka_topic", "kafka_partition", "kafka_offset")  # the staged item's record


def table_key(et: EventTypeSettings, id_field: str | None) -> tuple[str, ...]:
    """A target table's primary key: the upsert key, else the event id (or the Kafka
    coordinates), with ``event_time`` when partitioned (a partitioned table's unique key must
    hold its partition key; event_time is fixed per event, so a replay still conflicts)."""
    if et.write_mode == "upsert":
        return tuple(et.upsert_key)
    key: tuple[str, ...] = (id_field,) if id_field else COORDINATES
    return (*key, "event_time") if et.interval != "none" else key


@dataclass(frozen=True, slots=True)
class ChildLayout:
    """One child table of an event type: its columns, their types, and its settings."""

    settings: ChildTableSettings
    parent_key: tuple[tuple[str, str], ...]  # (name, PostgreSQL type) of the parent's key
    items: tuple[tuple[str, str], ...]  # (name, PostgreSQL type) of the item's columns

    @property
    def table(self) -> str:
        """The child table's name."""
        return self.settings.table

    @property
    def key(self) -> tuple[str, ...]:
        """The child's primary key: the parent's key and the item's position."""
        return (*(name for name, _ in self.parent_key), self.settings.index_column)

    @property
    def with_time(self) -> bool:
        """Is ``event_time`` added after the parent's key (not part of it)?"""
        return "event_time" not in dict(self.parent_key)

    @property
    def head(self) -> tuple[str, ...]:
        """The parent's part of a child row: its key, and event_time."""
        return (*(name for name, _ in self.parent_key),
                *(("event_time",) if self.with_time else ()))

    @property
    def columns(self) -> tuple[str, ...]:
        """The child table's columns in order."""
        return (*self.head, self.settings.index_column, *(name for name, _ in self.items))

    @property
    def stage_columns(self) -> tuple[str, ...]:
        """The columns of a staged child row, in the order the decoder builds them."""
        return (*self.head, *self.origin, self.settings.index_column,
                *(name for name, _ in self.items))

    @property
    def origin(self) -> tuple[str, ...]:
        """The record's coordinates a staged row adds (those not in the parent's key)."""
        return tuple(c for c in ORIGIN if c not in self.head)

    def types(self) -> dict[str, str]:
        """Every staged column's PostgreSQL type, by name."""
        return {**META_TYPES, **dict(self.parent_key), self.settings.index_column: "integer",
                **dict(self.items)}

    def head_positions(self, own: Sequence[str]) -> tuple[int, ...]:
        """Where the parent's part and the item's record are in a parent row's values
        (``own``: the event type's own columns), in :attr:`stage_columns` order."""
        return tuple(own.index(name) if name in own else POSITION[name]
                     for name in (*self.head, *self.origin))
