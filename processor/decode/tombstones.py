"""A tombstone's Kafka key as the upsert key of the row it deletes.

The contract for producers: the Kafka key of *every* event of a table keyed by the Kafka key
(updates and tombstones alike) is the key in its canonical form (:func:`canonical_key`).
With one key column, that is the column's value as UTF-8 text (``o-00042``; for a number
or boolean column, its compact JSON, ``42``); with several, the JSON object of exactly
those fields in the order of ``upsert_key``, compact, as orjson writes it, an integer
column's value as an integer (``{"tenant":"t1","order_id":42}``).

One form, because Kafka picks a record's partition from its key's *bytes*: the same key in
another notation (fields in another order, spaces, ``4.2e1``) lands on another partition,
where nothing orders it against the key's updates, and the DELETE would take a tombstone
from another partition for a newer one. So a key in any other notation is a
``tombstone_key`` dead letter that shows the form expected. Each value must also be one an
event could carry: it is checked by the contract's own schema for that property (length,
pattern, type…), then by its column's check, so a key that could not have come from an
event of this type is a dead letter with the reason, never a failed or wrong DELETE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastjsonschema
import orjson

from processor.contracts import Contract
from processor.core.errors import EventRejected
from processor.core.keys import canonical_key
from processor.core.settings import EventTypeSettings
from processor.decode.converters import Unfit, check_text, converter_for, show

# Column types whose key text is a JSON scalar (a number, true/false), not a string.
_JSON_SCALARS = frozenset({"bigint", "integer", "numeric", "double precision", "boolean"})
_INTEGERS = frozenset({"bigint", "integer"})
# Root keywords a property's schema may refer to (``$ref``) or depend on (the draft).
_SHARED = ("$schema", "definitions", "$defs")
# How much of the expected canonical form a dead letter's message shows.
_SHOWN = 300


class TombstoneKey:
    """How one event type's tombstones map their Kafka key to the upsert key."""

    def __init__(self, contract: Contract, settings: EventTypeSettings) -> None:
        self.mode = settings.tombstone_mode
        types = {c.name: c.pg_type for c in contract.columns}
        self.names = tuple(settings.upsert_key)
        self._types = tuple(types.get(n, "text") for n in self.names)
        self._validate = _key_validator(contract.schema, self.names)

    def key_values(self, key: bytes | None) -> tuple[Any, ...]:
        """The upsert key's column values named by ``key``, or raise a dead letter."""
        if key is None:
            raise _refused("the tombstone has no key, so no row to delete")
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            raise _refused(f"the key {show(key)} is not UTF-8 text") from None
        fields = self._fields(text)
        try:
            self._validate(fields)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _refused(f"no event of this type could carry it: {exc.message}") from None
        expected = canonical_key({n: _integral(v) if t in _INTEGERS else v for n, t, v in
                                  zip(self.names, self._types, map(fields.get, self.names),
                                      strict=True)}, self.names)
        if key != expected:
            raise _refused(
                f"the key {show(text)} is not in the canonical form "
                f"{show(expected.decode('utf-8', 'backslashreplace'), _SHOWN)}: every event "
                f"of the table must be keyed so ({self._form()}), for Kafka puts another "
                "notation of the same key on another partition, unordered with its updates")
        return tuple(self._value(n, t, fields[n])
                     for n, t in zip(self.names, self._types, strict=True))

    def _fields(self, text: str) -> dict[str, Any]:
        """The key's fields by name, as JSON values (a text column's: the text itself)."""
        if len(self.names) == 1:
            name, pg_type = self.names[0], self._types[0]
            if pg_type not in _JSON_SCALARS:
                return {name: text}
            try:
                return {name: orjson.loads(text)}
            except orjson.JSONDecodeError as exc:
                raise _refused(f"field {name!r}: {exc}") from None
        try:
            fields = orjson.loads(text)
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict) or set(fields) != set(self.names):
            raise _refused(f"the key {show(text)} is not a JSON object with exactly the "
                           f"fields {list(self.names)}")
        return fields

    def _form(self) -> str:
        if len(self.names) > 1:
            return (f"the JSON object of {', '.join(self.names)} in that order, with no "
                    "spaces")
        return "its value's compact JSON"

    @staticmethod
    def _value(name: str, pg_type: str, raw: Any) -> Any:
        try:
            if pg_type == "text":
                return check_text(raw)
            return converter_for(pg_type)(raw)
        except (Unfit, ValueError, TypeError, OverflowError) as exc:
            raise _refused(f"field {name!r}: {exc}") from None


def _integral(value: Any) -> Any:
    """An integer column's value as an integer: ``3.0`` names the row ``3`` does, and the
    canonical form writes it ``3``."""
    return int(value) if type(value) is float and value.is_integer() else value


def _key_validator(schema: Mapping[str, Any], names: Sequence[str]
                   ) -> Callable[[Any], Any]:
    """The contract's own checks of the key's properties (and nothing else), compiled once:
    a key value no event of the type could carry fails here as an event would."""
    properties = schema.get("properties", {})
    part = {k: schema[k] for k in _SHARED if k in schema}
    part.update(type="object", properties={n: properties[n] for n in names if n in properties})
    return fastjsonschema.compile(part)


def _refused(why: str) -> EventRejected:
    return EventRejected("tombstone_key", "decode", f"a tombstone whose key does not map "
                         f"to the upsert key: {why}")
