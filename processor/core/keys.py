"""The Kafka key's canonical form: what producers key an event (or its tombstone) with, and
what the upserts expect (the contract between ``weir produce``, upstream producers and the
decode stage's tombstones)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson


def canonical_key(values: Mapping[str, Any], names: Sequence[str]) -> bytes:
    """The Kafka key of the event (or tombstone) whose upsert key ``names`` has ``values``
    (as JSON values): one string, its UTF-8; one other value, its compact JSON; several, the
    compact JSON object of exactly those fields in ``names``' order."""
    if len(names) > 1:
        return orjson.dumps({n: values[n] for n in names})
    value = values[names[0]]
    return value.encode() if isinstance(value, str) else orjson.dumps(value)
