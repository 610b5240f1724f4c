"""Sample events as Protobuf messages of the example ``.proto``, framed as Confluent's
serializer frames them (schema id, then the message-index array ``[0]``: one zero byte)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message_factory import GetMessageClass  # type: ignore[import-untyped]

from processor.registry.protobuf_schema import parse_proto


def protobuf_encoder(schema_id: int, text: str) -> Callable[[dict[str, Any]], bytes]:
    """How the first message of ``text`` is written for each JSON-shaped sample event."""
    message = GetMessageClass(parse_proto(text).message([0]))
    header = b"\x00" + schema_id.to_bytes(4, "big") + b"\x00"

    def encode(event: dict[str, Any]) -> bytes:
        # json_format takes the event as protobuf's JSON mapping does: a Timestamp as an
        # RFC 3339 string, an enum by name, a wrapper as its plain value.
        built = json_format.ParseDict(event, message(), ignore_unknown_fields=True)
        payload: bytes = built.SerializeToString()
        return header + payload

    return encode
