"""The transform stage at run time: one event type's transforms as one step of the decoder.

A transform is user code, so any failure of one rejects that one event (``transform_error``,
naming the transform), and so does a result that is not an event: a row is built from its
fields. ``None`` drops the event (counted as filtered, not a dead letter).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from processor.core.errors import EventRejected, describe
from processor.core.text import printable

Event = dict[str, Any]
Transform = Callable[[Event], Event | None]  # one configured function
Chain = Callable[[Event], Event | None]  # an event type's transforms, as one


def chain(transforms: Sequence[Transform]) -> Chain | None:
    """The transforms run in order as one function; None when there are none."""
    if not transforms:
        return None
    steps = tuple(transforms)

    def run(event: Event) -> Event | None:
        for transform in steps:
            try:
                transformed = transform(event)
            except Exception as exc:  # noqa: BLE001 - user code: any failure rejects one event
                raise EventRejected(
                    "transform_error", "transform",
                    printable(f"{_name(transform)}: {describe(exc)}"),
                ) from None
            if transformed is None:
                return None
            if not isinstance(transformed, dict):  # a row is built from its fields
                raise EventRejected(
                    "transform_error", "transform", f"{_name(transform)} returned "
                    f"{type(transformed).__name__}, not the event (a dict) or None",
                )
            event = transformed
        return event

    return run


def _name(transform: Transform) -> str:
    return str(getattr(transform, "__name__", repr(transform)))
