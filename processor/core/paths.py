"""Paths into an event: ``shipping.address.country``, ``items[0].sku``, ``lines[2][1]``.

A path is a dotted list of object keys, each followed by any number of array indexes in
brackets. It is parsed once, when the settings are read (:func:`parse_path`), and walked per
event by a function made for it (:func:`compile_walk`).

What a walk finds, decided here once for every mapped column:

- the value at the path;
- :data:`ABSENT` when a key is missing, an index is past the array's end, or a step meets
  ``null`` (a missing part of an optional structure: the column is NULL or its default);
- :class:`PathMismatch` when a step meets a value of the wrong kind (a key asked of a
  string, an index of an object): the event is not of the shape the mapping declares, a
  dead letter naming the path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Step = str | int
Walk = Callable[[Any], Any]

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()

_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class PathMismatch(ValueError):
    """A step of a path met a value of the wrong kind."""


def parse_path(text: str) -> tuple[Step, ...]:
    """The steps of a path (keys as ``str``, indexes as ``int``); raises ValueError.

    ``.`` alone is the value itself (no steps): a child table's item that is not an object.
    """
    if text == ".":
        return ()
    steps: list[Step] = []
    for segment in text.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise ValueError(
                f"path {text!r}: {segment!r} is not a key followed by [index]es (keys hold no "
                "'.', '[' or ']'; indexes are whole numbers from 0)")
        steps.append(match.group(1))
        steps.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return tuple(steps)


def show_path(steps: tuple[Step, ...]) -> str:
    """A path as written in the config."""
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else step
    return out


def compile_walk(steps: tuple[Step, ...]) -> Walk:
    """The walk of one path: the value there, :data:`ABSENT`, or raise
    :class:`PathMismatch`."""
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def top(value: Any) -> Any:  # the usual mapped field: one call, no loop
            if type(value) is dict:
                return value.get(key, ABSENT)
            if value is None:
                return ABSENT
            raise _mismatch(steps, 0, value, "an object")
        return top

    def walk(event: Any) -> Any:
        value = event
        for i, step in enumerate(steps):
            if value is None:
                return ABSENT
            if isinstance(step, str):
                if type(value) is not dict:
                    raise _mismatch(steps, i, value, "an object")
                value = value.get(step, ABSENT)
                if value is ABSENT:
                    return ABSENT
            else:
                if type(value) is not list:
                    raise _mismatch(steps, i, value, "an array")
                if step >= len(value):
                    return ABSENT
                value = value[step]
        return value
    return walk


def _mismatch(steps: tuple[Step, ...], i: int, value: Any, wanted: str) -> PathMismatch:
    kind = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number")
    # The path's root: the event, a JSON key or a child table's item.
    where = show_path(steps[:i]) or "the value itself"
    return PathMismatch(f"{where} is {kind}, not {wanted}")
