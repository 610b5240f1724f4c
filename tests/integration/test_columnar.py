"""The columnar path against the row path, on the real servers.

The same events, most of them the usual kind and the rest odd in every way the columnar
path must notice (literals PostgreSQL and the row path read differently, nulls a field may
not hold, escapes, non-ASCII, bad dates, fields the contract does not name, values of
another type, bytes that are not JSON), are written by two pipelines into schemas of their
own: one with the columnar path, one with ``pipeline.columnar: false``. Every column of
every row, as PostgreSQL's text, and every dead letter (its reason, message and bytes) must
be the same, and the columnar pipeline must have written most events by its own path.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import load_settings
from tests.integration.conftest import KAFKA, ROOT, Harness
from tests.integration.servers import free_port
from tests.integration.test_observability import eventually, get

USUAL = 4_000  # of each event type
ODD_EVERY = 40  # one odd order among this many usual ones


def _order_variants(event: dict[str, Any], raw: bytes) -> list[bytes]:
    """One order made odd in each way (the bytes the producer would send)."""
    e = dict(event)

    def with_(**fields: Any) -> bytes:
        return orjson.dumps({**e, **fields})

    amount = orjson.dumps(e["amount"])
    return [
        raw.replace(b'"amount":' + amount, b'"amount":1.50'),
        raw.replace(b'"amount":' + amount, b'"amount":1e2'),
        raw.replace(b'"amount":' + amount, b'"amount":12345678901234567890'),
        raw.replace(b'"amount":' + amount, b'"amount":0.30000000000000001'),
        raw.replace(b'"amount":' + amount, b'"amount":NaN'),
        raw.replace(b'"amount":' + amount, b'"amount":-1'),
        with_(items=[{"sku": "a", "qty": 1, "price": 78.10}]).replace(b"78.1", b"78.10"),
        with_(channel=None), with_(channel="mail"), with_(tags=None), with_(placed_ms=None),
        with_(tags=["gift", "b2b"]), with_(placed_ms=1_765_000_000_000),
        with_(shipping={"address": {"country": "DE", "city": "Köln"}, "method": "express"}),
        with_(shipping={"address": {"country": 5}}), with_(shipping=None),
        with_(order_id="o-\u00e9"), orjson.dumps(e).replace(b'"o-', b'"o\\u002d'),
        with_(order_id="a\u0000b"), with_(customer_id=""), with_(status="unknown"),
        with_(currency="eur"), with_(currency="EURO"), with_(items=[]),
        with_(occurred_at=e["occurred_at"].replace("T", "t")),
        with_(occurred_at=e["occurred_at"][:19] + ".123456789Z"),
        with_(occurred_at="2026-02-30T10:00:00Z"), with_(occurred_at="0001-01-01T00:30:00+01:00"),
        with_(occurred_at="2026-12-07 10:00:00Z"), with_(occurred_at="2026-12-07T10:00:60Z"),
        with_(event_id=e["event_id"].upper()), with_(event_id=e["event_id"].replace("-", "")),
        with_(event_id="{" + e["event_id"] + "}"), with_(seq=0),
        b" " + raw, raw.replace(b",", b",\n", 1), raw.replace(b",", b",\t", 1),
        raw[:-1], b"[" + raw + b"]", b"null", b"", b"\xff" + raw,
    ]


def _whole_batch_variants(event: dict[str, Any], raw: bytes) -> list[bytes]:
    """Odd in a way that Arrow's reader refuses for the whole batch it is in."""
    return [orjson.dumps({**event, "extra": 1}), orjson.dumps({**event, "seq": 1.0}),
            raw[:-1] + b',"seq":2}', orjson.dumps({**event, "seq": "7"})]


def _page_view_variants(event: dict[str, Any]) -> list[bytes]:
    urls = ["HTTPS://shop.example/p?q=1", "https://user@shop.example/p?x", "https://a/b#f?x",
            "https://shop.example", "https://shop.example:8443/p;v?x#y", "ftp://shop/p?x",
            "https://shop.example/p?", "https://shop.example/ p?x"]
    return [orjson.dumps({**event, "url": url}) for url in urls] + [
        orjson.dumps({**event, "user_agent": None}),
        orjson.dumps({**event, "duration_ms": None})]


Header = tuple[str, bytes | None]
Record = tuple[bytes | None, bytes, list[Header]]  # key, value, headers


def _record_variants(key: bytes, event: dict[str, Any], headers: list[Header]
                     ) -> list[Record]:
    """A rich order whose mapped columns are odd (its key, its tenant header, the paths
    they map): the row path writes some and refuses others."""
    raw = orjson.dumps(event)

    def with_(**fields: Any) -> bytes:
        return orjson.dumps({**event, **fields})

    return [(b"\xff" + key, raw, headers), (key + b"\x00", raw, headers), (None, raw, headers),
            ("ключ".encode(), raw, headers), (key, raw, [("tenant", b"\xc3")]),
            (key, raw, [("tenant", b"a\x00")]), (key, raw, [("tenant", None)]),
            (key, raw, [("tenant", b"one"), ("other", b"\xff"), ("tenant", b"two")]),
            (key, raw, []), (key, with_(placed_ms=253_402_300_800_000), headers),
            (key, with_(placed_ms=253_402_300_799_999), headers),
            (key, with_(shipping={"address": "Berlin"}), headers),
            (key, with_(shipping={"method": "pickup"}), headers),
            (key, with_(shipping={"address": {"city": "Köln"}}), headers)]


def data_set(rich: bool = False) -> dict[str, list[Record]]:
    """The orders and page views, in the order they are produced, keyed as producers key
    them (by customer, by user). Each odd event is a new event (its own id), so that it is
    a row of its own, not a duplicate of another. ``rich``: the orders carry what the
    example maps (and a tenant header), and some of the odd ones are odd there."""
    sample = SampleEvents(seed=11, rich=rich)

    def fresh(event_type: str, key_field: str) -> tuple[bytes, dict[str, Any], list[Header]]:
        _, event = sample.make(event_type)
        key = event[key_field]
        return key.encode(), event, list(sample.headers(event_type, key))

    orders: list[Record] = []
    odd = 0
    for i in range(USUAL):
        key, event, headers = fresh("order", "customer_id")
        orders.append((key, orjson.dumps(event), headers))
        if i % ODD_EVERY == 0:
            key, event, headers = fresh("order", "customer_id")
            variants = [(key, v, headers) for v in _order_variants(event, orjson.dumps(event))]
            if rich:
                variants += _record_variants(key, event, headers)
            orders.append(variants[odd % len(variants)])
            odd += 1
    for _ in range(4):
        key, event, headers = fresh("order", "customer_id")
        variants = _whole_batch_variants(event, orjson.dumps(event))
        orders.append((key, variants[_ % len(variants)], headers))
    views: list[Record] = []
    for i in range(USUAL):
        key, event, headers = fresh("page_view", "user_id")
        views.append((key, orjson.dumps(event), headers))
        if i % ODD_EVERY == 0:
            key, event, headers = fresh("page_view", "user_id")
            variants = _page_view_variants(event)
            views.append((key, variants[i // ODD_EVERY % len(variants)], headers))
    return {"order": orders, "page_view": views}


async def publish(h: Harness, values: dict[str, list[Record]]) -> None:
    await ensure_topics(load_settings(h.config), 3)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True,
                                linger_ms=20)
    await producer.start()
    try:
        for event_type, records in values.items():
            for key, value, headers in records:
                await producer.send(h.topics[event_type], value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def written(h: Harness, table: str) -> list[str]:
    """Every row of ``table`` but its ingestion time, as PostgreSQL's text, in Kafka order."""
    columns = [r["column_name"] for r in h.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND "
        "table_name = $2 AND column_name <> 'ingested_at' ORDER BY ordinal_position",
        h.schema, table)]
    picked = ", ".join(f"{c}::text" for c in columns)
    return [str(tuple(r)) for r in h.sql(
        f"SELECT {picked} FROM {table} ORDER BY kafka_topic, kafka_partition, kafka_offset")]


def dead(h: Harness) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in h.sql(
        'SELECT topic, partition, "offset", key, value, event_type, stage, reason, error '
        'FROM weir_dead_letters ORDER BY topic, partition, "offset"')]


def written_alike(columnar: Harness, rows: Harness, port: int, least_letters: int) -> str:
    """Run ``rows`` (the row path) over the published events, then ``columnar`` (metrics on
    ``port``) until it has written as much; assert every row and every dead letter the
    same, and more than ``least_letters`` of those. Returns ``columnar``'s metrics text."""
    reference = rows.start("rows", "--until-caught-up")
    assert reference.wait(180) == 0, rows.why_exited(reference)
    want = {t: written(rows, t) for t in ("orders", "page_views")}
    letters = dead(rows)
    assert len(letters) > least_letters  # the odd events really are refused by the row path
    weir = columnar.start("columnar")
    total = sum(map(len, want.values()))
    columnar.wait_for("SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM "
                      "page_views) + (SELECT count(*) FROM weir_dead_letters)",
                      total + len(letters), timeout=120, alive=[weir])
    text: str = eventually(lambda: (r := get(f"http://127.0.0.1:{port}/metrics"))[0] == 200
                           and r[1], 30, "metrics")
    for table, expected in want.items():
        got = written(columnar, table)
        assert len(got) == len(expected), table
        differ = [(a, b) for a, b in zip(got, expected, strict=True) if a != b]
        assert not differ, f"{table}: {len(differ)} rows differ, first: {differ[:2]}"
    assert dead(columnar) == letters
    return text


def _mapped_columns() -> list[dict[str, Any]]:
    """The orders' mapped columns as the example ships them."""
    shipped = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    columns: list[dict[str, Any]] = shipped["event_types"]["order"]["columns"]
    return columns


@pytest.mark.parametrize("mapped", [False, True], ids=["plain", "mapped"])
def test_the_columnar_path_writes_what_the_row_path_writes(tmp_path: Path,
                                                          mapped: bool) -> None:
    """``mapped``: the orders with the example's mapped columns (a nested path, an epoch,
    the tenant header, the key), on rich orders with odd keys, headers and paths too."""
    port = free_port()
    columnar = Harness(tmp_path / "columnar", partitions=3,
                       metrics={"enabled": True, "port": port})
    rows = Harness(tmp_path / "rows", partitions=3, pipeline={"columnar": False},
                   topics=[{"name": t, "event_type": et} for et, t in columnar.topics.items()])
    rows.topics = dict(columnar.topics)
    if mapped:
        for h in (columnar, rows):
            h.rewrite(lambda c: c["event_types"]["order"].update(columns=_mapped_columns()))
    values = data_set(rich=mapped)
    try:
        columnar.migrate()
        rows.migrate()
        asyncio.run(publish(columnar, values))
        text = written_alike(columnar, rows, port, least_letters=30)
        by_row_path = sum(float(v) for v in re.findall(
            r"^weir_columnar_row_path_total\{[^}]*\} (\S+)$", text, re.MULTILINE))
        events = sum(len(v) for v in values.values())
        assert by_row_path < events / 3, f"{by_row_path} of {events} took the row path"
        taken = re.search(r'^weir_columnar_events_total\{event_type="order"\} (\S+)$', text,
                          re.MULTILINE)
        assert taken is not None
        assert float(taken.group(1)) > USUAL / 2
        assert 'reason="odd bytes"' in text
        assert 'reason="unreadable batch"' in text
        if mapped:
            assert 'reason="not surely valid"' in text  # the odd keys, headers and epochs
            tenants = columnar.sql("SELECT count(DISTINCT tenant) AS n, count(ship_city) AS c, "
                                   "count(placed_at) AS p FROM orders")[0]
            assert tenants["n"] >= 3
            assert tenants["c"] > USUAL / 2
            assert tenants["p"] > USUAL / 2
    finally:
        columnar.cleanup()
        rows.cleanup()
