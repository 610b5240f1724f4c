"""A registry subject's version as an event contract (``event_types.<name>.registry_subject``).

The version's schema becomes a JSON Schema by the documented type mapping (Avro:
:mod:`.avro_contract`; Protobuf: :mod:`.protobuf_schema`; a JSON Schema is itself), so the
table, validation and evolution are those of any contract; its parsed form is kept as the
*reader* side: events written with another version of the subject resolve to it (Avro's
schema resolution, Protobuf by field number).
"""

from __future__ import annotations

from typing import Any

import orjson

from processor.core.debezium_types import connect_schema_of_avro, contract_of, record_struct
from processor.registry.avro_contract import json_schema_from_avro
from processor.registry.client import RegisteredSchema


def derive(schema: RegisteredSchema, version: int, message: str | None = None,
           envelope: str = "none") -> tuple[dict[str, Any], Any]:
    """(the contract's JSON Schema, the reader schema) of one registered version. For
    ``envelope`` debezium, the version is a change event's envelope (Avro only) and the
    contract is its ``after`` row's, typed as the JSON converter's schema would be."""
    if envelope == "debezium":
        return _change_event(schema, version)
    if schema.schema_type == "AVRO":
        document = orjson.loads(schema.text)
        return json_schema_from_avro(document, version=version), document
    if schema.schema_type == "PROTOBUF":
        from processor.registry.protobuf_schema import json_schema_from_proto, parse_proto
        proto = parse_proto(schema.text)
        if message is not None and message not in proto.message_names:
            raise ValueError(f"registry_message {message!r} is not a top-level message of the "
                             f"subject's file ({list(proto.message_names)})")
        index = proto.message_names.index(message) if message else 0
        descriptor = proto.message([index])
        return json_schema_from_proto(descriptor, version=version), descriptor
    if schema.schema_type == "JSON":
        document = orjson.loads(schema.text)
        if not isinstance(document, dict):
            raise ValueError("the registered JSON Schema is not an object")
        return {**document, "version": version}, None
    raise ValueError(f"schema type {schema.schema_type!r} is not AVRO, PROTOBUF or JSON")


def _change_event(schema: RegisteredSchema, version: int) -> tuple[dict[str, Any], Any]:
    """A Debezium envelope's version: the ``after`` record's contract, and the envelope as
    the reader schema (events of other versions resolve to it whole)."""
    if schema.schema_type != "AVRO":
        raise ValueError(f"a Debezium change event's schema of type {schema.schema_type} is "
                         "not read: Avro, or JSON with the embedded schema (docs/cdc.md)")
    document = orjson.loads(schema.text)
    after = record_struct(connect_schema_of_avro(document), "after")
    if after is None:
        raise ValueError("not a Debezium change event's envelope: it has no 'after' record")
    contract = contract_of(after, title="the 'after' row of a Debezium change event")
    return {**contract, "version": version}, document
