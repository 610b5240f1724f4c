"""The columnar path on framed topics against the row path, on the real servers.

Orders in Avro and page views in Protobuf, through the real registry, most of them the
usual kind and the rest odd in every way a framed record can be (bad framing, ids the
registry does not know or of another subject, truncated or trailing bytes, text that is not
UTF-8, decimals past their precision or with trailing zeros, times past 9999, NULs,
non-ASCII, values the contract refuses, a newer writer schema with a field the contract
does not name, Protobuf's own poisons). Two pipelines read the same topics into schemas of
their own: one with the columnar path, one with ``pipeline.columnar: false``. Every column
of every row, as PostgreSQL's text, and every dead letter (reason, message and the framed
bytes) must be the same, and the columnar pipeline must have written most events by its
own path.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from processor.commands.produce.encode import encoder, frame
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import SchemaRegistrySettings, load_settings
from processor.registry.client import RegistryClient
from tests.integration.conftest import REGISTRY, Harness
from tests.integration.servers import free_port
from tests.integration.test_columnar import Record, publish, written_alike
from tests.integration.test_format_poison import ORDER_AVSC, _avro_bytes, _record, _with

USUAL = 3_000  # of each event type
ODD_EVERY = 30  # one odd record among this many usual ones

def _encoding(h: Harness, event_type: str, fmt: str
              ) -> tuple[Callable[[dict[str, Any]], bytes], str, int]:
    """How ``weir produce`` writes ``event_type`` in ``fmt`` to its topic in ``h``, the
    topic's subject and the id of the schema it registered there."""
    settings = load_settings(h.config)
    topic = next(t for t in settings.topics if t.event_type == event_type)
    encode = encoder(settings, topic, event_type, fmt)
    registry = RegistryClient(SchemaRegistrySettings(url=REGISTRY))
    return encode, topic.value_subject, registry.version(topic.value_subject).schema.schema_id


def _order_variants(h: Harness) -> Callable[[dict[str, Any]], list[bytes | None]]:
    """One order made odd in each way an Avro record can be (the schemas registered once)."""
    to_avro, subject, avro_id = _encoding(h, "order", "avro")
    registry = RegistryClient(SchemaRegistrySettings(url=REGISTRY))
    other_id = registry.register(f"other-{uuid.uuid4().hex[:8]}-value",
                                 orjson.dumps({**ORDER_AVSC, "doc": "another"}).decode(), "AVRO")
    # A newer writer: one optional field more, which the contract does not name yet.
    newer = {**ORDER_AVSC, "fields": [*ORDER_AVSC["fields"], {
        "name": "note", "type": ["null", "string"], "default": None}]}
    newer_id = registry.register(subject, orjson.dumps(newer).decode(), "AVRO")
    return lambda event: _odd_orders(event, to_avro, avro_id, other_id, newer, newer_id)


def _odd_orders(event: dict[str, Any], to_avro: Callable[[dict[str, Any]], bytes],
                avro_id: int, other_id: int, newer: dict[str, Any], newer_id: int
                ) -> list[bytes | None]:
    good = to_avro(event)
    body = _avro_bytes(ORDER_AVSC, _record(event))

    def with_(**fields: Any) -> bytes:
        return to_avro({**event, **fields})

    def raw_amount(amount: str) -> bytes:
        return frame(avro_id, _avro_bytes(ORDER_AVSC, {**_record(event),
                                                        "amount": Decimal(amount)}))

    return [
        raw_amount("12.50"), raw_amount("0.00"), raw_amount("1000.00"),
        frame(avro_id, _avro_bytes(
            _with("amount", {"type": "bytes", "logicalType": "decimal", "precision": 20,
                             "scale": 2}),
            {**_record(event), "amount": Decimal("123456789012345.67")})),
        frame(avro_id, _avro_bytes(_with("occurred_at", "long"),
                                   {**_record(event), "occurred_at": 2**62})),
        frame(avro_id, _avro_bytes(_with("event_id", "string"),
                                   {**_record(event), "event_id": "not-a-uuid"})),
        frame(avro_id, _avro_bytes(_with("event_id", "string"),
                                   {**_record(event), "event_id": event["event_id"].upper()})),
        frame(newer_id, _avro_bytes(newer, {**_record(event), "note": "gift"})),
        frame(newer_id, _avro_bytes(newer, {**_record(event), "note": None})),
        with_(channel=None), with_(order_id="o-\u00e9"), with_(order_id="a\u0000b"),
        with_(order_id='a"b\\c'), with_(order_id="a\nb"), with_(customer_id=""),
        with_(currency="eur"), with_(currency="EURO"), with_(items=[]), with_(seq=0),
        with_(items=[{"sku": "a", "qty": 1, "price": 0.1 + 0.2}]),
        with_(items=[{"sku": "a", "qty": 1, "price": 1e300}]),
        b"\x07" + good[1:], b"\x00\x00\x01", orjson.dumps(event),
        frame(2**31 - 7, body), frame(other_id, body), good[:-6], good + b"\x00\x00",
        frame(avro_id, _avro_bytes(ORDER_AVSC, _record({**event, "customer_id": "@@@@"}))
              .replace(b"@@@@", b"\xff\xfe\xfd\xfc")),
        None,
    ]


def _page_view_variants(h: Harness) -> Callable[[dict[str, Any]], list[bytes | None]]:
    """One page view made odd in each way a Protobuf record can be."""
    to_proto, _, proto_id = _encoding(h, "page_view", "protobuf")
    urls = ["HTTPS://shop.example/p?q=1", "https://user@shop.example/p?x", "https://a/b#f?x",
            "https://shop.example/p?", "https://shop.example/ p?x", "https://shop.example/é?x"]
    return lambda event: [to_proto({**event, "url": url}) for url in urls] + [
        to_proto({**event, "user_agent": None}), to_proto({**event, "duration_ms": None}),
        to_proto({**event, "referrer": "a\u0000b"}), to_proto({**event, "seq": 0}),
        frame(proto_id, b"\x02\x02" + b"\x08\x01"),
        frame(proto_id, b"\x00" + b"\x1a\x03abc"),
        frame(proto_id, b"\x00" + b"\xf8\x06\x01"),
        to_proto(event)[:-3], b"\x07" + to_proto(event)[1:], None,
    ]


def data_set(h: Harness) -> dict[str, list[Record]]:
    """Keyed as producers key them; each odd record is a new event (its own id)."""
    settings = load_settings(h.config)
    by_type = {t.event_type: t for t in settings.topics}
    sample = SampleEvents(seed=13)
    out: dict[str, list[Record]] = {}
    for event_type, key_field, fmt, variants in (
            ("order", "customer_id", "avro", _order_variants),
            ("page_view", "user_id", "protobuf", _page_view_variants)):
        encode = encoder(settings, by_type[event_type], event_type, fmt)
        odd_ones = variants(h)
        records: list[Record] = []
        odd = 0
        for i in range(USUAL):
            _, event = sample.make(event_type)
            records.append((event[key_field].encode(), encode(event), []))
            if i % ODD_EVERY == 0:
                _, event = sample.make(event_type)
                made = odd_ones(event)
                records.append((event[key_field].encode(), made[odd % len(made)], []))
                odd += 1
        out[event_type] = records
    return out


def test_the_columnar_path_on_framed_topics_writes_what_the_row_path_writes(
        tmp_path: Path) -> None:
    port = free_port()
    columnar = Harness(tmp_path / "columnar", partitions=3, schema_registry={"url": REGISTRY},
                       metrics={"enabled": True, "port": port})
    topics = [{"name": columnar.topics["order"], "event_type": "order", "format": "avro"},
              {"name": columnar.topics["page_view"], "event_type": "page_view",
               "format": "protobuf"}]
    columnar.rewrite(lambda config: config.update(topics=topics))
    rows = Harness(tmp_path / "rows", partitions=3, schema_registry={"url": REGISTRY},
                   pipeline={"columnar": False}, topics=topics)
    rows.topics = dict(columnar.topics)
    try:
        columnar.migrate()
        rows.migrate()
        values = data_set(columnar)
        asyncio.run(publish(columnar, values))
        text = written_alike(columnar, rows, port, least_letters=40)
        for event_type, records in values.items():
            taken = sum(float(v) for v in re.findall(
                rf'^weir_columnar_events_total\{{event_type="{event_type}"\}} (\S+)$',
                text, re.MULTILINE))
            assert taken > len(records) * 2 / 3, (event_type, taken, len(records))
        assert 'reason="odd bytes"' in text
        assert 'reason="unreadable batch"' in text, re.findall(r"^weir_columnar.*$", text, re.M)
    finally:
        columnar.cleanup()
        rows.cleanup()
