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

import contextlib
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, cast

from processor.core.child_layout import ChildLayout
from processor.core.errors import EventRejected
from processor.core.paths import ABSENT, PathMismatch, compile_walk, parse_path
from processor.core.records import ChildRows, Header
from processor.decode.converters import show, why_unfit
from processor.decode.mapped import Mapped, compile_mapped
from processor.decode.rows import compile_source, mapped_lines, namespace

ChildBuilder = Callable[[dict[str, Any], tuple[Any, ...], "bytes | None", "Sequence[Header]",
                         str, int], ChildRows]
_Part = Callable[[dict[str, Any], tuple[Any, ...], "bytes | None", "Sequence[Header]", str,
                  int], "list[tuple[Any, ...]] | None"]


def compile_children(layouts: Sequence[ChildLayout], own: Sequence[str], event_type: str,
                     keep_absent: bool, fast: bool = True) -> ChildBuilder | None:
    """The builder of one event type's child rows (None: it has no child tables).

    ``own`` is the event type's own columns (where the parent's key is in its row);
    ``keep_absent``: an absent array keeps the stored items (``update_mode: merge``);
    without ``fast``, every item goes through the generic code (for the tests that hold
    both to the same rows).
    """
    if not layouts:
        return None
    parts = [_part(layout, own, event_type, keep_absent, fast) for layout in layouts]

    def build(event: dict[str, Any], row: tuple[Any, ...], key: bytes | None,
              headers: Sequence[Header], topic: str, timestamp_ms: int) -> ChildRows:
        return tuple(part(event, row, key, headers, topic, timestamp_ms) for part in parts)
    return build


def _part(layout: ChildLayout, own: Sequence[str], event_type: str, keep_absent: bool,
          fast: bool) -> _Part:
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
        # Any doubt (the fast code raised anything): each item as the generic code says.
        if fast_items is not None:
            with contextlib.suppress(Exception):
                return fast_items(found, head)
        out = []
        for i, item in enumerate(found):
            try:
                out.append((*head, i, *(c(item, key, headers, topic, timestamp_ms)
                                        for c in columns)))
            except (ValueError, TypeError, OverflowError) as exc:  # Unfit, mostly
                raise _unfit(f"{where}, item {i}: {why_unfit(exc)}") from None
        return out
    fast_items = compile_items(layout, event_type, columns) if fast else None
    return rows


def compile_items(layout: ChildLayout, event_type: str, columns: Sequence[Mapped]
                   ) -> Callable[[list[Any], tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The usual array's staged rows in one call, as straight-line code per item (the row
    builder's, :func:`~processor.decode.rows.mapped_lines`). One-sided like it: the rows
    the generic loop gives, or raise anything, and the generic loop decides."""
    space = namespace()
    body: list[str] = []
    for j, column in enumerate(layout.settings.columns):
        inline = mapped_lines(f"v{j}", j, column, "item", space, event_type)
        if inline is None:  # a path through an array, a zoned time: its own function
            space[f"m{j}"] = columns[j]
            inline = [f"    v{j} = m{j}(item, None, (), '', 0)"]
        body += inline
    values = "".join(f", v{j}" for j in range(len(layout.settings.columns)))
    objects = any(column.steps for column in layout.settings.columns)
    lines = ["def items(found, head):", "    out = []", "    for i, item in enumerate(found):",
             *(["        if type(item) is not dict:\n            unusual()"] if objects else []),
             *(textwrap.indent(line, "    ") for line in body),
             f"        out.append((*head, i{values}))", "    return out"]
    return cast("Callable[[list[Any], tuple[Any, ...]], list[tuple[Any, ...]]]",
                compile_source("\n".join(lines) + "\n", "items", space))


def _unfit(message: str) -> EventRejected:
    return EventRejected("conversion_error", "transform", message)
