"""Child rows: each configured array of an event, one staged row per item.

Built after the event's own row, from it (the parent's key and the record the items came
from, where :mod:`processor.core.child_layout` puts them) and from the array's items, each
item's columns found and converted as a mapped column's are (:mod:`processor.decode.mapped`:
the same paths, converters and column-fit checks), relative to the item.

Per child table the result is a list of staged rows, or None: the array is absent (or
null) on a table with ``update_mode: merge``, where that keeps the stored items. Anywhere
else an absent array is no items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from processor.core.child_layout import ChildLayout
from processor.core.errors import EventRejected
from processor.core.paths import ABSENT, PathMismatch, compile_walk, parse_path
from processor.core.records import ChildRows, Header
from processor.decode.converters import show, why_unfit
from processor.decode.mapped import compile_mapped

ChildBuilder = Callable[[dict[str, Any], tuple[Any, ...], "bytes | None", "Sequence[Header]",
                         str, int], ChildRows]
_Part = Callable[[dict[str, Any], tuple[Any, ...], "bytes | None", "Sequence[Header]", str,
                  int], "list[tuple[Any, ...]] | None"]


def compile_children(layouts: Sequence[ChildLayout], own: Sequence[str], event_type: str,
                     keep_absent: bool) -> ChildBuilder | None:
    """The builder of one event type's child rows (None: it has no child tables).

    ``own`` is the event type's own columns (where the parent's key is in its row);
    ``keep_absent``: an absent array keeps the stored items (``update_mode: merge``).
    """
    if not layouts:
        return None
    parts = [_part(layout, own, event_type, keep_absent) for layout in layouts]

    def build(event: dict[str, Any], row: tuple[Any, ...], key: bytes | None,
              headers: Sequence[Header], topic: str, timestamp_ms: int) -> ChildRows:
        return tuple(part(event, row, key, headers, topic, timestamp_ms) for part in parts)
    return build


def _part(layout: ChildLayout, own: Sequence[str], event_type: str, keep_absent: bool
          ) -> _Part:
    settings = layout.settings
    positions = layout.head_positions(own)
    walk = compile_walk(parse_path(settings.path))
    columns = [compile_mapped(c, event_type) for c in settings.columns]
    limit = settings.max_items
    where = f"child table {layout.table}: path {settings.path!r}"

    def rows(event: dict[str, Any], row: tuple[Any, ...], key: bytes | None,
             headers: Sequence[Header], topic: str, timestamp_ms: int
             ) -> list[tuple[Any, ...]] | None:
        try:
            found = walk(event)
        except PathMismatch as exc:
            raise _unfit(f"{where}: {exc}") from None
        if found is ABSENT or found is None:
            return None if keep_absent else []
        if type(found) is not list:
            raise _unfit(f"{where}: {show(found)} is not an array")
        if len(found) > limit:
            raise EventRejected("too_many_items", "transform",
                                f"{where}: {len(found)} items, over max_items ({limit})")
        head = tuple(row[p] for p in positions)
        out = []
        for i, item in enumerate(found):
            try:
                out.append((*head, i, *(c(item, key, headers, topic, timestamp_ms)
                                        for c in columns)))
            except (ValueError, TypeError, OverflowError) as exc:  # Unfit, mostly
                raise _unfit(f"{where}, item {i}: {why_unfit(exc)}") from None
        return out
    return rows


def _unfit(message: str) -> EventRejected:
    return EventRejected("conversion_error", "transform", message)
