"""A registered schema's text, parsed once into what its format's reader needs.

Avro: the schema's JSON, checked by fastavro. Protobuf: the compiled file, from
``.proto`` text or a base64 descriptor (:mod:`processor.registry.protobuf_schema`). JSON
Schema: the schema as a mapping (the event type's contract validates; the writer's schema
only has to be one). A text that is none of these raises :class:`SchemaUnusable`, and the
events that name it become dead letters with the parser's message.
"""

from __future__ import annotations

from typing import Any

import fastavro
import orjson

from processor.core.settings import Settings
from processor.registry.client import RegisteredSchema, RegistryClient
from processor.registry.schemas import SchemaBook, SchemaUnusable


def parse_registered(schema: RegisteredSchema) -> Any:
    """The parsed form of ``schema`` for its type; raises :class:`SchemaUnusable`."""
    if schema.references:  # an Avro schema's are inlined when it is fetched
        raise SchemaUnusable(f"it references other registered schemas, which Weir resolves "
                             f"for Avro only, not yet for {schema.schema_type}")
    if schema.schema_type == "PROTOBUF":
        from processor.registry.protobuf_schema import ProtoSchemaError, parse_proto
        try:
            return parse_proto(schema.text)
        except ProtoSchemaError as exc:
            raise SchemaUnusable(str(exc)) from None
    try:
        document = orjson.loads(schema.text)
    except orjson.JSONDecodeError as exc:
        raise SchemaUnusable(f"its text is not JSON: {exc}") from None
    if schema.schema_type == "JSON":
        if not isinstance(document, dict):
            raise SchemaUnusable("a JSON Schema must be an object")
        return document
    if schema.schema_type != "AVRO":
        raise SchemaUnusable(f"schema type {schema.schema_type!r} is not AVRO, PROTOBUF or JSON")
    try:
        fastavro.parse_schema(document)  # valid Avro; the reader compiles its own form
    except (fastavro.schema.SchemaParseException, fastavro.schema.UnknownType,
            ValueError, TypeError, KeyError) as exc:
        raise SchemaUnusable(f"not a valid Avro schema: {exc}") from None
    return document


def schema_book(settings: Settings) -> SchemaBook | None:
    """The process's schema book, or None when no registry is configured."""
    registry = settings.schema_registry
    if registry.url is None:
        return None
    return SchemaBook(RegistryClient(registry), registry.cache_size, parse_registered)
