"""No event stops Weir: each kind of poison lands as one dead letter, its neighbours as rows.

One run of `weir run --until-caught-up` over two topics: the example orders, and probes of an
event type made here that maps every column type Weir has (and routes by a type field). Good
events surround 38 kinds of bad record, each produced once with a key of its own, so
every dead letter is attributed by its Kafka coordinates to the kind that made it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import load_settings
from tests.integration.conftest import KAFKA, Harness

Coords = tuple[str, int, int]
MAX_MESSAGE_BYTES = 65_536
GOOD_ORDERS = 2000
GOOD_PROBES = 300
PROBE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["kind", "event_id", "count"],
    "properties": {
        "kind": {"type": "string"},
        "event_id": {"type": "string", "format": "uuid"},
        # A boolean passes this schema; the bigint column must still refuse it.
        "count": {"type": ["integer", "boolean"], "x-weir-column-type": "bigint"},
        "small": {"type": "integer", "x-weir-column-type": "integer"},
        "ratio": {"type": "number", "x-weir-column-type": "double precision"},
        "price": {"type": ["number", "string"], "x-weir-column-type": "numeric"},
        "flag": {"type": ["boolean", "string"], "x-weir-column-type": "boolean"},
        "label": {"type": ["string", "integer"], "x-weir-column-type": "text"},
        "day": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time"},
        "doc": {"type": "object"},
    },
}

SAMPLE = SampleEvents(seed=5)


def order(**changes: Any) -> dict[str, Any]:
    """A valid sample order with ``changes``."""
    _, event = SAMPLE.make("order")
    event.update(changes)
    return event


def probe(**changes: Any) -> dict[str, Any]:
    """A valid probe with ``changes``."""
    event: dict[str, Any] = {
        "kind": "probe", "event_id": str(uuid.uuid4()), "count": 7, "small": -5,
        "ratio": 0.25, "price": "19.99", "flag": True, "label": "ok", "day": "2026-02-28",
        "at": "2026-11-25T10:00:00Z", "doc": {"a": [1, "b"]},
    }
    event.update(changes)
    return event


def dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def swapped(event: dict[str, Any], field: str, literal: bytes) -> bytes:
    """``event`` as JSON with ``field``'s value written as the raw ``literal``."""
    marker = "__swap__"
    return dumps({**event, field: marker}).replace(f'"{marker}"'.encode(), literal)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# kind: (topic, value, reason, what the error message must say)
POISON: dict[str, tuple[str, bytes | None, str, str]] = {
    "uuid_malformed": ("order", dumps(order(event_id="not-a-uuid")), "conversion_error",
                       "field 'event_id': 'not-a-uuid' is not a UUID"),
    "seq_2_63": ("order", dumps(order(seq=2**63)), "conversion_error",
                 "field 'seq': 9223372036854775808 is out of range for bigint"),
    "seq_2_64": ("order", swapped(order(), "seq", b"18446744073709551616"), "conversion_error",
                 "field 'seq': 1.8446744073709552e+19 is out of range for bigint"),
    "seq_below_int64": ("order", swapped(order(), "seq", b"-9223372036854775809"),
                        "schema_violation", "data.seq must be bigger than or equal to 1"),
    "nul_mapped_text": ("order", dumps(order(order_id="o-\x00")), "conversion_error",
                        "field 'order_id' holds a NUL character"),
    "nul_unmapped": ("order", dumps(order(note="a\x00b")), "conversion_error",
                     "field 'note' holds a NUL character"),
    "nul_key": ("order", dumps(order(meta={"k\x00": 1})), "conversion_error",
                "a key ('k\\x00') in field 'meta' holds a NUL character"),
    "nul_in_jsonb_column": ("order", dumps(order(items=[{"sku": "\x00", "qty": 1, "price": 1}])),
                            "conversion_error", "field 'items[0].sku' holds a NUL character"),
    "lone_surrogate": ("order", swapped(order(), "customer_id", b'"c-\\ud800"'), "decode_error",
                       "surrogate"),
    "feb_30": ("order", dumps(order(occurred_at="2024-02-30T10:00:00Z")), "schema_violation",
               "data.occurred_at must be date-time"),
    "year_0": ("order", dumps(order(occurred_at="0000-06-01T10:00:00Z")), "conversion_error",
               "field 'occurred_at': '0000-06-01T10:00:00Z' is not a valid date-time: year 0"),
    "year_10000": ("order", dumps(order(occurred_at="10000-01-01T10:00:00Z")),
                   "schema_violation", "data.occurred_at must be date-time"),
    # PostgreSQL takes these, but in UTC they are in the years 0 and 10000: the partition of
    # the time field, and any Python reader, could not hold them.
    "time_before_year_1_utc": ("order", dumps(order(occurred_at="0001-01-01T00:00:00+14:00")),
                               "conversion_error", "field 'occurred_at': "
                               "'0001-01-01T00:00:00+14:00' is outside the years 1 to 9999"),
    "time_after_year_9999_utc": ("order", dumps(order(occurred_at="9999-12-31T23:59:59-14:00")),
                                 "conversion_error", "is outside the years 1 to 9999 in UTC"),
    "leap_second": ("order", dumps(order(occurred_at="2016-12-31T23:59:60Z")),
                    "conversion_error", "field 'occurred_at'"),
    "number_1e400": ("order", swapped(order(), "amount", b"1e400"), "decode_error",
                     "number is infinity"),
    "number_1e1000000": ("order", swapped(order(), "note", b"1e1000000"), "decode_error",
                         "number is infinity"),
    # orjson reads it as 0.0; jsonb's numeric refuses the scale. PostgreSQL's data error is
    # isolated by the sink (bisection), which the decoder leaves it to (see rawjson.py).
    "number_overscaled": ("order", swapped(order(), "note", b"1e-16384"), "rejected_by_table",
                          "value overflows numeric format"),
    "deep_nesting": ("order", dumps(order(note=nested(100))), "too_deep", "max_json_depth"),
    "empty_value": ("order", b"", "decode_error", "not JSON"),
    "not_utf8": ("order", b'{"event_id": "\xff\xfe"}', "decode_error", "not JSON"),
    "json_array": ("order", b"[1, 2, 3]", "not_an_object", "got list"),
    "tombstone": ("order", None, "empty_value", "tombstone"),
    "too_large": ("order", dumps(order(note="x" * MAX_MESSAGE_BYTES)), "too_large",
                  "max_message_bytes"),
    "wrong_type": ("order", dumps(order(amount="lots")), "schema_violation", "data.amount"),
    "integer_column_range": ("probe", dumps(probe(small=2**31)), "conversion_error",
                             "field 'small': 2147483648 is out of range for integer"),
    "boolean_as_integer": ("probe", dumps(probe(count=True)), "conversion_error",
                           "field 'count': True is a boolean, not an integer"),
    "string_as_boolean": ("probe", dumps(probe(flag="yes")), "conversion_error",
                          "field 'flag': 'yes' is a string, not a boolean"),
    "integer_as_text": ("probe", dumps(probe(label=5)), "conversion_error",
                        "field 'label': 5 is an integer, not a string"),
    "numeric_overscaled": ("probe", dumps(probe(price="1e-20000")), "conversion_error",
                           "field 'price': '1e-20000' has more than 16383 digits after"),
    "numeric_too_large": ("probe", dumps(probe(price="9e131072")), "conversion_error",
                          "field 'price': '9e131072' has more than 131072 digits before"),
    "numeric_nan": ("probe", dumps(probe(price="NaN")), "conversion_error",
                    "field 'price': 'NaN' is not a finite number"),
    "numeric_garbage": ("probe", dumps(probe(price="12,5")), "conversion_error",
                        "field 'price': '12,5' is not a number"),
    "date_year_0": ("probe", dumps(probe(day="0000-03-01")), "conversion_error",
                    "field 'day': '0000-03-01' is not a valid date: year 0"),
    "nul_in_object": ("probe", dumps(probe(doc={"a": {"b": "\x00"}})), "conversion_error",
                      "field 'doc.a.b' holds a NUL character"),
    "unknown_event_type": ("probe", dumps(probe(kind="nope")), "unknown_event_type",
                           "field 'kind' is 'nope'"),
}


# Good values in records whose Kafka timestamp a producer set outside the years 1 to 9999:
# as the row's kafka_timestamp, and the probes' event_time, they cannot be partitioned.
DAY_MS = 86_400_000
# Kafka refuses timestamps before 1970 and, since 4.0, by default more than an hour ahead;
# the test lifts that bound on the probes' topic, as older brokers have it.
TIMED: dict[str, tuple[str, int]] = {
    "kafka_time_year_10000": ("probe", 253_402_300_800_000 + DAY_MS),
    "kafka_time_year_287000": ("probe", 9_000_000_000_000_000),
}
POISON.update({kind: (topic, dumps(order() if topic == "order" else probe()),
                      "conversion_error", "the record's Kafka timestamp")
               for kind, (topic, _) in TIMED.items()})


def _configure(h: Harness) -> None:
    """Add the probe event type and its topic (routed by its ``kind`` field) to the config."""
    schema = h.tmp / "probe.v1.json"
    schema.write_bytes(orjson.dumps(PROBE_SCHEMA))
    h.topics["probe"] = h.topics["order"].replace(".orders", ".probes")
    config = yaml.safe_load(h.config.read_text())
    config["event_types"]["probe"] = {"schema_file": str(schema), "table": "probes",
                                      "id_field": "event_id"}
    config["topics"].append({"name": h.topics["probe"], "type_field": "kind"})
    h.config.write_text(yaml.safe_dump(config))


def _stream() -> list[tuple[str, str | None, bytes | None, list[tuple[str, bytes]]]]:
    """(topic key, poison kind or None, value, headers), the poison spread among the good."""
    good: list[tuple[str, str | None, bytes | None, list[tuple[str, bytes]]]] = [
        ("order", None, dumps(order()), []) for _ in range(GOOD_ORDERS)]
    good += [("probe", None, dumps(probe()), []) for _ in range(GOOD_PROBES)]
    # Good despite appearances: binary header bytes, an escaped backslash before "u0000",
    # a UUID without dashes (asyncpg's parser takes it), extreme but valid values.
    good += [
        ("order", None, dumps(order()), [("bin", b"\x00\xff\x01")]),
        ("order", None, dumps(order(note="\\u0000 is six characters")), []),
        ("order", None, dumps(order(seq=2**63 - 1)), []),
        ("order", None, dumps(order(note=1e-300)), []),
        ("probe", None, dumps(probe(event_id=uuid.uuid4().hex, small=-(2**31))), []),
        ("probe", None, dumps(probe(price=1e308, ratio=-1e308, count=-(2**63))), []),
        ("probe", None, dumps(probe(day="9999-12-31", at="0001-01-01T00:00:00Z")), []),
        ("order", None, dumps(order(occurred_at="9999-12-31T23:59:59.999999Z")), []),
    ]
    every = len(good) // len(POISON)
    stream = list(good)
    for n, (kind, (topic, value, _, _)) in enumerate(POISON.items()):
        stream.insert(n * every + every // 2, (topic, kind, value, [("kind", kind.encode())]))
    return stream


async def _any_timestamp(topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic,
            {"message.timestamp.after.max.ms": str(2**63 - 1)})])
    finally:
        await admin.close()


async def _produce(h: Harness) -> tuple[dict[Coords, str], dict[str, int]]:
    """Send the stream; the poison kinds by coordinates, and good events per topic key."""
    await ensure_topics(load_settings(h.config), 6)
    await _any_timestamp(h.topics["probe"])
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=20,
                                max_request_size=4 * MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        sent = []
        for n, (topic, kind, value, headers) in enumerate(_stream()):
            timestamp = TIMED[kind][1] if kind in TIMED else None
            future = await producer.send(h.topics[topic], value, key=f"k-{n}".encode(),
                                         headers=headers, timestamp_ms=timestamp)
            sent.append((topic, kind, future))
        poison: dict[Coords, str] = {}
        good = {"order": 0, "probe": 0}
        for topic, kind, future in sent:
            meta = await future
            if kind is None:
                good[topic] += 1
            else:
                poison[(meta.topic, meta.partition, meta.offset)] = kind
        return poison, good
    finally:
        await producer.stop()


def test_every_kind_of_poison_is_one_dead_letter_and_weir_keeps_going(tmp_path: Path) -> None:
    h = Harness(tmp_path, pipeline={"max_message_bytes": MAX_MESSAGE_BYTES})
    _configure(h)
    try:
        h.migrate()
        poison, good = asyncio.run(_produce(h))
        assert len(poison) == len(POISON)
        weir = h.start("weir", "--until-caught-up")
        assert weir.wait(120) == 0, h.why_exited(weir)
        for table, topic in (("orders", "order"), ("probes", "probe")):
            assert h.scalar(f"SELECT count(*) FROM {table}") == good[topic], table
            assert h.scalar(f"SELECT count(DISTINCT event_id) FROM {table}") == good[topic]
        letters = h.sql("SELECT topic, partition, \"offset\", reason, error "
                        "FROM weir_dead_letters")
        found: dict[Coords, list[tuple[str, str]]] = {}
        for r in letters:
            found.setdefault((r["topic"], r["partition"], r["offset"]), []).append(
                (r["reason"], r["error"]))
        assert set(found) == set(poison), "dead letters that are not the poison, or missing"
        for coords, kind in poison.items():
            _, _, reason, fragment = POISON[kind]
            assert len(found[coords]) == 1, kind
            got_reason, error = found[coords][0]
            assert (kind, got_reason) == (kind, reason), error
            assert fragment in error, (kind, error)
        timeless = h.sql("SELECT topic, partition, \"offset\" FROM weir_dead_letters "
                         "WHERE kafka_timestamp IS NULL")
        assert sorted(poison[tuple(r)] for r in timeless) == sorted(TIMED)
        # The good probe with the extreme values is stored exactly.
        assert h.scalar("SELECT count(*) FROM probes WHERE count = -9223372036854775808 "
                        "AND price = 1e308 AND ratio = -1e308") == 1
    finally:
        h.cleanup()
