"""The peer: Quix Streams with its PostgreSQL sink, doing Weir's example pipeline.

Runs in its own virtualenv (``benchmarks/.venv``, made by ``make bench``), never Weir's: Quix
Streams is only a benchmark peer. Same topics, same transforms (imported from Weir's
examples, which need only the standard library), one table per event type keyed by
``event_id`` with ``ON CONFLICT DO NOTHING`` as Weir's are. The sink's defaults are kept
(checkpoint every 5 s, ``execute_values`` inserts) because they are what users get.

``--format avro`` reads Confluent-framed Avro with Quix's own ``AvroDeserializer`` given
only the registry (``schema_registry_client_config``): the writer's schema is fetched by
the id in each record, through confluent-kafka's ``SchemaRegistryClient``, as a Quix user
reading a Confluent producer's topic would. The rows are the same shape as from JSON.

    benchmarks/.venv/bin/python benchmarks/peer_quix.py --group g --schema s \
        --topic order=t1 --topic page_view=t2 [--format avro --registry URL]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer
from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig
from quixstreams.sinks.community.postgresql import PostgreSQLSink

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from processor.transform import examples

TABLES = {"order": "orders", "page_view": "page_views"}
Transform = Callable[[dict[str, Any]], dict[str, Any] | None]
TRANSFORMS: dict[str, list[Transform]] = {"order": [examples.normalize_currency],
              "page_view": [examples.drop_bots, examples.strip_url_query]}


def shape(event: dict[str, Any]) -> dict[str, Any]:
    """Typed time like Weir's column; nulls filled because the sink cannot type a None.

    (Its column typing maps ``type(value)`` and raises on ``NoneType``.)
    """
    event["occurred_at"] = datetime.fromisoformat(event["occurred_at"])
    return {k: ("" if v is None else v) for k, v in event.items()}


def shape_avro(event: dict[str, Any]) -> dict[str, Any]:
    """The same row shape from Avro's Python values as :func:`shape` makes from JSON.

    fastavro gives ``occurred_at`` (timestamp-millis) as a datetime already, ``event_id``
    (uuid) as a UUID and ``amount`` (decimal) as a Decimal: they become the text and the
    number the JSON events carry, so both formats land in the same column types.
    """
    return {k: ("" if v is None else str(v) if isinstance(v, UUID)
                else float(v) if isinstance(v, Decimal) else v)
            for k, v in event.items()}


def value_deserializer(fmt: str, registry: str | None) -> Any:
    """``json``, or Quix's Avro deserializer with the registry (the writer's schema by id)."""
    if fmt == "json":
        return "json"
    if registry is None:
        raise SystemExit("--format avro needs --registry")
    return AvroDeserializer(
        schema_registry_client_config=SchemaRegistryClientConfig(url=registry))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--topic", action="append", required=True, help="event_type=topic")
    parser.add_argument("--idle-s", type=float, default=5.0, help="stop after this long idle")
    parser.add_argument("--format", choices=["json", "avro"], default="json")
    parser.add_argument("--registry", help="the Schema Registry's URL (for --format avro)")
    args = parser.parse_args()
    # Quix keeps local state in ./state by default; keep it with the run's scratch files.
    state = Path(__file__).resolve().parent / "results" / "tmp" / "quix-state"
    app = Application(broker_address="127.0.0.1:19092", consumer_group=args.group,
                      auto_offset_reset="earliest", loglevel="WARNING", state_dir=state)
    for pair in args.topic:
        event_type, name = pair.split("=", 1)
        sdf = app.dataframe(app.topic(
            name, value_deserializer=value_deserializer(args.format, args.registry),
            key_deserializer="str"))
        for transform in TRANSFORMS[event_type]:
            sdf = sdf.apply(transform).filter(lambda e: e is not None)
        sdf = sdf.apply(shape if args.format == "json" else shape_avro)
        sdf.sink(PostgreSQLSink(
            host="127.0.0.1", port=15432, dbname="weir", user="weir", password="weir",  # noqa: S106 - the local stack's
            table_name=TABLES[event_type], schema_name=args.schema,
            primary_key_columns="event_id", on_conflict_do_nothing=True,
        ))
    app.run(timeout=args.idle_s)


if __name__ == "__main__":
    main()
