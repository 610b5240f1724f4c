"""A tombstone's Kafka key as the upsert key of the row it deletes.

The contract for producers: with one key column, the Kafka key is that column's value as
UTF-8 text (``o-00042``; for a number column, its JSON number, ``42``); with several, it is
a JSON object holding exactly those fields (``{"tenant": "t1", "order_id": 42}``). Each
value then goes through its column's own check, so a key that could not have come from an
event of this type is a ``tombstone_key`` dead letter with the reason, never a failed
DELETE.
"""

from __future__ import annotations

from typing import Any

import orjson

from processor.contracts import Contract
from processor.decode.converters import Unfit, check_text, converter_for, show
from processor.errors import EventRejected
from processor.settings import EventTypeSettings

# Column types whose key text is a JSON scalar (a number, true/false), not a string.
_JSON_SCALARS = frozenset({"bigint", "integer", "numeric", "double precision", "boolean"})


class TombstoneKey:
    """How one event type's tombstones map their Kafka key to the upsert key."""

    def __init__(self, contract: Contract, settings: EventTypeSettings) -> None:
        self.mode = settings.tombstone_mode
        types = {c.name: c.pg_type for c in contract.columns}
        self.names = tuple(settings.upsert_key)
        self._types = tuple(types.get(n, "text") for n in self.names)

    def key_values(self, key: bytes | None) -> tuple[Any, ...]:
        """The upsert key's column values named by ``key``, or raise a dead letter."""
        if key is None:
            raise _refused("the tombstone has no key, so no row to delete")
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            raise _refused(f"the key {show(key)} is not UTF-8 text") from None
        if len(self.names) == 1:
            return (self._value(self.names[0], self._types[0], text, from_text=True),)
        try:
            fields = orjson.loads(text)
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict) or set(fields) != set(self.names):
            raise _refused(f"the key {show(text)} is not a JSON object with exactly the "
                           f"fields {list(self.names)}")
        return tuple(self._value(n, t, fields[n], from_text=False)
                     for n, t in zip(self.names, self._types, strict=True))

    @staticmethod
    def _value(name: str, pg_type: str, raw: Any, from_text: bool) -> Any:
        try:
            value = orjson.loads(raw) if from_text and pg_type in _JSON_SCALARS else raw
            if pg_type == "text":
                return check_text(value)
            return converter_for(pg_type)(value)
        except (Unfit, ValueError, TypeError, OverflowError, orjson.JSONDecodeError) as exc:
            raise _refused(f"field {name!r}: {exc}") from None


def _refused(why: str) -> EventRejected:
    return EventRejected("tombstone_key", "decode", f"a tombstone whose key does not map "
                         f"to the upsert key: {why}")
