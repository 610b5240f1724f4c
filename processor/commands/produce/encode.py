"""Sample events in each wire format, as producers using Confluent's serializers write them.

``json`` is the event's JSON. The framed formats register the example schema beside the
event type's contract (``order.avsc``, ``order.proto``, or the JSON Schema itself) under the
topic's subject, then frame each payload with the magic byte and the schema id (and, for
Protobuf, the message-index array ``[0]``: the single byte 0).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import orjson

from processor.core.settings import Settings, TopicSettings
from processor.registry.client import RegistryClient

Event = dict[str, Any]
Encode = Callable[[Event], bytes]
SUFFIX = {"avro": ".avsc", "protobuf": ".proto"}


def frame(schema_id: int, payload: bytes) -> bytes:
    """The Confluent framing: magic byte 0, the id as 4 bytes big-endian, the payload."""
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def example_schema(settings: Settings, event_type: str, fmt: str) -> Path:
    """The example schema of ``event_type`` in ``fmt``, beside its JSON Schema contract."""
    contract = settings.schema_path(event_type)
    if fmt == "jsonschema":
        return contract
    return contract.parent / f"{event_type}{SUFFIX[fmt]}"


def encoder(settings: Settings, topic: TopicSettings, event_type: str, fmt: str) -> Encode:
    """How ``weir produce`` writes ``event_type``'s sample events to ``topic`` in ``fmt``."""
    if fmt == "json":
        return orjson.dumps
    path = example_schema(settings, event_type, fmt)
    if not path.is_file():
        raise ValueError(f"no example {fmt} schema for {event_type!r}: {path} does not exist")
    text = path.read_text()
    client = RegistryClient(settings.schema_registry)
    kind = {"avro": "AVRO", "protobuf": "PROTOBUF", "jsonschema": "JSON"}[fmt]
    schema_id = client.register(topic.value_subject, text, kind)
    if fmt == "avro":
        return _avro(schema_id, fastavro.parse_schema(orjson.loads(text)))
    if fmt == "protobuf":
        from processor.commands.produce.protobuf_sample import protobuf_encoder
        return protobuf_encoder(schema_id, text)
    return lambda event: frame(schema_id, orjson.dumps(event))


def _avro(schema_id: int, schema: Any) -> Encode:
    # The sample events are JSON-shaped; Avro's logical types take Python objects.
    logical = {f["name"]: f["type"].get("logicalType") for f in schema["fields"]
               if isinstance(f["type"], dict)}
    times = [n for n, t in logical.items() if t in ("timestamp-millis", "timestamp-micros")]
    decimals = [n for n, t in logical.items() if t == "decimal"]

    def encode(event: Event) -> bytes:
        record = dict(event)
        for name in times:
            if isinstance(record.get(name), str):
                record[name] = datetime.fromisoformat(record[name])
        for name in decimals:
            if isinstance(record.get(name), float | int):
                record[name] = Decimal(repr(record[name]))
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, record)
        return frame(schema_id, out.getvalue())

    return encode
