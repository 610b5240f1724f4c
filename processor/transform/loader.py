"""Resolve the transforms named in config (``package.module:function``) once at start."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from processor.transform.chain import Chain, Transform, chain

if TYPE_CHECKING:
    from processor.core.settings import Settings


class TransformLoadError(ValueError):
    """A configured transform cannot be imported or is not callable."""


def load_transform(ref: str) -> Transform:
    """Import ``package.module:function``; the function maps an event to an event or None."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TransformLoadError(
            f"transform {ref!r}: cannot import {module_name!r}: {exc}"
        ) from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise TransformLoadError(f"transform {ref!r}: {module_name} has no callable {attr!r}")
    return func  # type: ignore[no-any-return]


def load_chain(refs: list[str]) -> list[Transform]:
    """All transforms of one event type, in order."""
    return [load_transform(ref) for ref in refs]


def load_chains(settings: Settings) -> dict[str, Chain | None]:
    """Every event type's transforms, loaded once, as the decoder runs them."""
    return {name: chain(load_chain(et.transforms)) for name, et in settings.event_types.items()}
