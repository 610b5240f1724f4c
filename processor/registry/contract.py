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

from processor.registry.avro_contract import json_schema_from_avro
from processor.registry.client import RegisteredSchema


def derive(schema: RegisteredSchema, version: int, message: str | None = None
           ) -> tuple[dict[str, Any], Any]:
    """(the contract's JSON Schema, the reader schema) of one registered version."""
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
