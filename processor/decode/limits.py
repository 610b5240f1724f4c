"""Bounds on the shape of a decoded event: nesting depth, string and array lengths, fields.

``pipeline.max_message_bytes`` already bounds the total; these bound what a small but
hostile message can still do (a 1,000-deep nesting costs 2 KB and a recursion per level
in every later stage). One iterative walk, no recursion, stops at the first violation.

The walk costs as much as validating the event, so it is skipped when the raw bytes alone
prove every bound holds (:meth:`Limits.fits_raw`): the usual small event never pays it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processor.core.errors import EventRejected
from processor.core.settings import PipelineSettings


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured bounds."""

    max_depth: int
    max_string: int
    max_array: int
    max_fields: int
    # The largest JSON text whose size alone keeps strings, arrays and objects in bounds:
    # derived once, since fits_raw runs for every event.
    raw_size_bound: int = field(init=False)

    def __post_init__(self) -> None:
        bound = min(self.max_string, 2 * min(self.max_array, self.max_fields) - 1)
        object.__setattr__(self, "raw_size_bound", bound)  # frozen: set once, here

    @classmethod
    def from_settings(cls, p: PipelineSettings) -> Limits:
        """Read them from ``pipeline.*``."""
        return cls(p.max_json_depth, p.max_string_length, p.max_array_length,
                   p.max_object_fields)

    def fits_raw(self, raw: bytes) -> bool:
        """True when JSON text of these bytes cannot pass any bound, whatever it holds.

        A string has at most as many characters as bytes (UTF-8 and escapes only make the
        text longer); an array of *n* items or an object of *n* fields takes at least 2*n - 1
        bytes; every level of nesting opens with a ``{`` or ``[`` byte (counting those inside
        strings too only overestimates). Counting bytes is C code, the walk is Python.
        """
        return (len(raw) <= self.raw_size_bound
                and raw.count(b"{") + raw.count(b"[") <= self.max_depth)

    def check(self, event: dict[str, Any]) -> None:
        """Raise :class:`EventRejected` if ``event`` passes any bound."""
        stack: list[tuple[Any, int]] = [(event, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > self.max_depth:
                raise EventRejected(
                    "too_deep", "decode",
                    f"nested deeper than pipeline.max_json_depth ({self.max_depth})",
                )
            if isinstance(node, dict):
                if len(node) > self.max_fields:
                    raise EventRejected(
                        "too_many_fields", "decode",
                        f"an object has {len(node)} fields, over pipeline.max_object_fields "
                        f"({self.max_fields})",
                    )
                children: Any = node.values()
                for key in node:
                    self._string(key)
            elif isinstance(node, list):
                if len(node) > self.max_array:
                    raise EventRejected(
                        "too_long", "decode",
                        f"an array has {len(node)} items, over pipeline.max_array_length "
                        f"({self.max_array})",
                    )
                children = node
            else:
                continue
            for child in children:
                if isinstance(child, str):
                    self._string(child)
                elif isinstance(child, dict | list):
                    stack.append((child, depth + 1))

    def _string(self, value: str) -> None:
        if len(value) > self.max_string:
            raise EventRejected(
                "too_long", "decode",
                f"a string has {len(value)} characters, over pipeline.max_string_length "
                f"({self.max_string})",
            )
