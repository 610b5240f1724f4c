"""A transform's Arrow form: the same function over a whole column at once.

The columnar path (:mod:`processor.decode.columnar`) decodes many events together as Arrow
columns, so it cannot call a transform per event. A transform may carry an Arrow form, given
with :func:`with_arrow`: a function of the batch's table (one column per top-level field of
the contract, null where a field is absent) that returns the table as the transform would
leave each event, which events it would drop, and which it is not sure of. It must agree
with the transform on every event it is sure of (the events it sees are valid for the
contract, and ASCII unless it is given with ``unicode=True``); an event it is not sure of
takes the row path, where the transform itself runs. An event type with a transform that
has no Arrow form stays on the row path, and one with a form for ASCII only takes the
columnar path for its ASCII events only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ArrowResult:
    """What an Arrow form returns."""

    table: Any  # a pyarrow.Table: the events as the transform leaves them
    keep: Any = None  # a boolean array, False where the transform drops the event; None: all
    unsure: Any = None  # a boolean array, True where the row path must decide; None: none


ArrowForm = Callable[[Any], ArrowResult]
_ATTRIBUTE = "__weir_arrow__"
_UNICODE = "__weir_arrow_unicode__"


def with_arrow(form: ArrowForm, *, unicode: bool = False) -> Callable[[T], T]:
    """Give the decorated transform ``form`` as its Arrow form. ``unicode``: the form
    agrees with the transform on any text (valid UTF-8), not only on ASCII."""
    def attach(transform: T) -> T:
        setattr(transform, _ATTRIBUTE, form)
        setattr(transform, _UNICODE, unicode)
        return transform
    return attach


def arrow_form(transform: object) -> ArrowForm | None:
    """The Arrow form given to ``transform``, if any."""
    form = getattr(transform, _ATTRIBUTE, None)
    return form if callable(form) else None


def takes_unicode(transform: object) -> bool:
    """Whether ``transform``'s Arrow form was given for any text, not only ASCII."""
    return arrow_form(transform) is not None and getattr(transform, _UNICODE, False) is True
