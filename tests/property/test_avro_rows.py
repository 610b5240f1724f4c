"""Any Avro record of ``schemas/order.avsc`` lands in its columns with the same values.

hypothesis builds records from the schema, within the JSON contract's own constraints
(``schemas/order.v1.json``: lengths, the currency pattern, enums, minimums) and with every
value the contract leaves free: any text (non-ASCII, astral, quotes, backslashes, NUL), any
instant of UTC years 1 to 9999 at millisecond precision, decimals up to their precision, any
finite price, 64-bit counts. Each record is written by fastavro, framed with the magic byte
and the id the real registry gave the schema, decoded by the real
:meth:`Decoder.decode_framed` (its :class:`SchemaBook` fetching from the registry), written
with a real binary COPY (the pool's codecs) into a table ``weir migrate``'s DDL shapes, and
read back: every column equals the record's value. The one thing the contract itself
refuses, NUL in a text (PostgreSQL's text and jsonb hold none), must be a dead letter with
``conversion_error``. Nothing else may happen: no other exception, never a wrong value.

Needs PostgreSQL and the schema registry of `make up`, hence ``integration``.
"""

from __future__ import annotations

import asyncio
import io
import json
import string
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import fastavro
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from processor.commands.produce.encode import frame
from processor.contracts import load_contracts
from processor.core.connections import register_codecs
from processor.core.errors import EventRejected
from processor.core.identifiers import quote_ident
from processor.core.pgtime import UTC_MILLIS
from processor.core.settings import Settings, load_settings
from processor.decode.columnar import compile_plan
from processor.decode.decoder import Decoder
from processor.decode.framed_columnar import decode_framed_batch
from processor.registry.client import RegistryClient
from processor.registry.parse import schema_book
from processor.schema.tables import TableSpec, table_spec, target_ddl
from tests.integration.conftest import (
    PG_ADDRESS,
    PG_DSN,
    REGISTRY,
    REGISTRY_ADDRESS,
    _reachable,
)
from tests.unit.decode.test_columnar import _block_values, _staged_as_row

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AVSC_TEXT = (ROOT / "schemas/order.avsc").read_text()
AVSC = orjson.loads(AVSC_TEXT)
WRITER = fastavro.parse_schema(AVSC)
EXAMPLES = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Text the contract leaves free: any code point but a lone surrogate (Avro strings are UTF-8),
# with the characters that matter one layer down drawn often.
odd_chars = st.sampled_from(["\x00", "\\", '"', "é", "\u2028", "\ufeff", "\U0010ffff", "\x7f",
                             "\n"])
chars = st.characters(exclude_categories=("Cs",)) | odd_chars
ids = st.text(chars, min_size=1, max_size=64)  # customer_id, order_id: minLength 1, maxLength 64


@st.composite
def amounts(draw: st.DrawFn) -> Decimal:
    """A decimal(12, 2) value: scale 0 to 2, at most 12 digits once scaled to 2, >= 0."""
    scale = draw(st.integers(0, 2))
    unscaled = draw(st.integers(0, 10 ** (10 + scale) - 1))
    return Decimal(unscaled).scaleb(-scale)


instants = st.datetimes(min_value=datetime(1, 1, 1),
                        max_value=datetime(9999, 12, 31, 23, 59, 59, 999_000)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC))
items = st.fixed_dictionaries({
    "sku": st.text(chars, max_size=40),
    "qty": st.integers(1, 2**63 - 1),
    "price": st.floats(min_value=0, allow_nan=False, allow_infinity=False),
})
records = st.fixed_dictionaries({
    "event_id": st.uuids().map(str),
    "customer_id": ids,
    "seq": st.integers(1, 2**63 - 1),
    "occurred_at": instants,
    "order_id": ids,
    "status": st.sampled_from(["created", "paid", "shipped", "cancelled"]),
    "amount": amounts(),
    "currency": st.text(st.sampled_from(string.ascii_letters), min_size=3, max_size=3),
    "items": st.lists(items, min_size=1, max_size=200),
    "channel": st.none() | st.sampled_from(["web", "app", "store"]),
})
# Kafka coordinates and timestamps the record may arrive with.
coordinates = st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1),
                        st.integers(UTC_MILLIS[0], UTC_MILLIS[1]))


@dataclass
class World:
    """The decoder, its registered schema id and a real table, on a loop of its own."""

    settings: Settings
    topic: str
    schema_id: int
    decoder: Decoder
    spec: TableSpec
    loop: asyncio.AbstractEventLoop
    conn: asyncpg.Connection

    def copy(self, values: tuple[Any, ...]) -> asyncpg.Record:
        """COPY one row in (binary, with the pool's codecs) and take it back out."""
        table = self.spec.qualified
        read = (f"DELETE FROM {table} RETURNING event_id, customer_id, seq, occurred_at, "
                "order_id, status, amount, currency, items::text AS items, channel, "
                "event_time, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, "
                "raw::text AS raw")

        async def go() -> asyncpg.Record:
            await self.conn.copy_records_to_table(
                self.spec.name, schema_name=self.spec.schema_name,
                columns=list(self.spec.columns), records=[values])
            found = await self.conn.fetch(read)
            assert len(found) == 1
            return found[0]

        return self.loop.run_until_complete(go())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for name, address in (("PostgreSQL", PG_ADDRESS), ("the schema registry",
                                                       REGISTRY_ADDRESS)):
        if not _reachable(address):
            pytest.fail(f"{name} is not answering on {address}: run `make up` first")
    tmp = tmp_path_factory.mktemp("avro_rows")
    suffix = uuid.uuid4().hex[:8]
    topic = f"prop.{suffix}.orders"
    config = {
        "kafka": {"bootstrap_servers": "127.0.0.1:19092", "group_id": f"prop-{suffix}"},
        "postgres": {"dsn": PG_DSN, "schema_name": f"prop_{suffix}"},
        "schema_registry": {"url": REGISTRY},
        "metrics": {"enabled": False},
        "event_types": {"order": {
            "schema_file": str(ROOT / "schemas/order.v1.json"), "table": "orders",
            "id_field": "event_id", "time_field": "occurred_at", "key_field": "customer_id"}},
        "topics": [{"name": topic, "event_type": "order", "format": "avro"}],
    }
    (tmp / "weir.yaml").write_text(yaml.safe_dump(config))
    s = load_settings(tmp / "weir.yaml")
    contracts = load_contracts(s)
    topic_settings = s.topics[0]
    # Once per module, under the topic's own subject (TopicNameStrategy).
    schema_id = RegistryClient(s.schema_registry).register(topic_settings.value_subject,
                                                           AVSC_TEXT, "AVRO")
    book = schema_book(s)
    assert book is not None
    loop = asyncio.new_event_loop()
    loop.run_until_complete(book.ensure([schema_id], None))
    spec = table_spec(contracts["order"], s)

    async def connect() -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(PG_DSN)
        await register_codecs(conn)
        await conn.execute(f"CREATE SCHEMA {quote_ident(spec.schema_name)}")
        for ddl in target_ddl(contracts["order"], spec):
            await conn.execute(ddl)
        return conn

    conn = loop.run_until_complete(connect())
    try:
        yield World(s, topic, schema_id, Decoder(s, contracts, {}, book), spec, loop, conn)
    finally:
        loop.run_until_complete(
            conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(spec.schema_name)} CASCADE"))
        loop.run_until_complete(conn.close())
        loop.close()


def avro(record: dict[str, Any], schema: Any = WRITER) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def has_nul(record: dict[str, Any]) -> bool:
    texts = [record["customer_id"], record["order_id"], record["currency"],
             *(i["sku"] for i in record["items"])]
    return any("\x00" in t for t in texts)


def kafka_instant(timestamp_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=timestamp_ms)


def exact_json(text: str) -> Any:
    """jsonb's text with its numbers exact: the float a JSON number stands for is compared
    by its decimal value, so jsonb cannot round it unseen."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def exact_item(item: dict[str, Any]) -> dict[str, Any]:
    return {"sku": item["sku"], "qty": Decimal(item["qty"]),
            "price": Decimal(repr(item["price"]))}


def check_row(stored: asyncpg.Record, record: dict[str, Any], where: tuple[str, int, int, int]
              ) -> None:
    topic, partition, offset, timestamp_ms = where
    assert str(stored["event_id"]) == record["event_id"]
    for text in ("customer_id", "order_id", "status", "currency", "channel"):
        assert stored[text] == record[text], text
    assert stored["seq"] == record["seq"]
    assert stored["occurred_at"] == record["occurred_at"]  # the same instant
    assert stored["event_time"] == record["occurred_at"]
    assert isinstance(stored["amount"], Decimal)
    assert stored["amount"] == record["amount"]
    assert exact_json(stored["items"]) == [exact_item(i) for i in record["items"]]
    assert (stored["kafka_topic"], stored["kafka_partition"], stored["kafka_offset"]) == (
        topic, partition, offset)
    assert stored["kafka_timestamp"] == kafka_instant(timestamp_ms)
    raw = exact_json(stored["raw"])
    assert datetime.fromisoformat(raw.pop("occurred_at")) == record["occurred_at"]
    assert raw.pop("amount") == record["amount"]
    assert raw.pop("items") == [exact_item(i) for i in record["items"]]
    rest = {k: v for k, v in record.items() if k not in ("occurred_at", "amount", "items")}
    assert raw == {k: Decimal(v) if k == "seq" else v for k, v in rest.items()}


@EXAMPLES
@given(record=records, where=coordinates)
def test_any_avro_order_lands_with_the_same_values(
        world: World, record: dict[str, Any], where: tuple[int, int, int]) -> None:
    partition, offset, timestamp_ms = where
    value = frame(world.schema_id, avro(record))
    refused: EventRejected | None = None
    try:
        decoded = world.decoder.decode_framed(world.topic, partition, offset, timestamp_ms,
                                              value)
    except EventRejected as exc:
        refused = exc
    if refused is not None:
        # Only what the contract itself refuses: NUL in a text, with its own reason.
        assert has_nul(record), (refused.reason, str(refused), record)
        assert refused.reason == "conversion_error", (refused.reason, str(refused))
        assert "NUL" in str(refused), str(refused)
        event("dead letter: NUL in a text")
        return
    assert not has_nul(record), ("a NUL was let through", decoded)
    assert decoded is not None  # no transform, nothing dropped
    event_type, values = decoded
    assert event_type == "order"
    stored = world.copy(values)
    check_row(stored, record, (world.topic, partition, offset, timestamp_ms))
    event("landed")


def plain_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "customer_id": "c-1", "seq": 1,
        "occurred_at": datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC),
        "order_id": "o-1", "status": "paid", "amount": Decimal("12.50"), "currency": "EUR",
        "items": [{"sku": "s", "qty": 1, "price": 12.5}], "channel": None,
    }
    record.update(changes)
    return record


def with_field_type(name: str, avro_type: Any) -> Any:
    """order.avsc with one field's type replaced: to write what fastavro's own writer
    refuses (the same binary, without its checks)."""
    schema = orjson.loads(AVSC_TEXT)
    for field in schema["fields"]:
        if field["name"] == name:
            field["type"] = avro_type
    return fastavro.parse_schema(schema)


def rejected(world: World, payload: bytes) -> EventRejected:
    with pytest.raises(EventRejected) as caught:
        world.decoder.decode_framed(world.topic, 0, 0, 1_700_000_000_000,
                                    frame(world.schema_id, payload))
    return caught.value


def test_the_plain_record_lands(world: World) -> None:
    record = plain_record()
    decoded = world.decoder.decode_framed(world.topic, 1, 2, 1_700_000_000_000,
                                          frame(world.schema_id, avro(record)))
    assert decoded is not None
    check_row(world.copy(decoded[1]), record, (world.topic, 1, 2, 1_700_000_000_000))


@pytest.mark.parametrize("changes", [
    {"customer_id": "c\x00"},
    {"order_id": "\x00"},
    {"items": [{"sku": "a\x00b", "qty": 1, "price": 0.0}]},
], ids=["customer_id", "order_id", "items.sku"])
def test_nul_in_a_text_is_a_conversion_error(world: World, changes: dict[str, Any]) -> None:
    exc = rejected(world, avro(plain_record(**changes)))
    assert exc.reason == "conversion_error", str(exc)
    assert "NUL" in str(exc)


@pytest.mark.parametrize("unscaled", [10**12, 1_234_567_890_123, 9_999_999_999_999])
def test_a_decimal_past_its_precision_is_a_conversion_error(world: World,
                                                            unscaled: int) -> None:
    # 13 digits in decimal(12, 2): fastavro's writer refuses it, so write the bytes.
    raw = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    exc = rejected(world, avro(plain_record(amount=raw), with_field_type("amount", "bytes")))
    assert exc.reason == "conversion_error", str(exc)
    assert "precision (12)" in str(exc), str(exc)


def test_twelve_digits_are_within_the_precision(world: World) -> None:
    record = plain_record(amount=Decimal("9999999999.99"))
    decoded = world.decoder.decode_framed(world.topic, 0, 0, 1_700_000_000_000,
                                          frame(world.schema_id, avro(record)))
    assert decoded is not None
    assert world.copy(decoded[1])["amount"] == Decimal("9999999999.99")


LAST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC) - EPOCH) // timedelta(
    milliseconds=1)


@pytest.mark.parametrize("millis", [LAST_MS + 1, 10**15, 2**62, 2**63 - 1,
                                    (datetime(1, 1, 1, tzinfo=UTC) - EPOCH)
                                    // timedelta(milliseconds=1) - 1, -(2**63)])
def test_a_time_outside_the_years_1_to_9999_is_a_conversion_error(world: World,
                                                                  millis: int) -> None:
    exc = rejected(world, avro(plain_record(occurred_at=millis),
                               with_field_type("occurred_at", "long")))
    assert exc.reason == "conversion_error", str(exc)
    assert "occurred_at" in str(exc)


def test_the_first_and_last_millisecond_land(world: World) -> None:
    for instant in (datetime(1, 1, 1, tzinfo=UTC), EPOCH + timedelta(milliseconds=LAST_MS)):
        record = plain_record(occurred_at=instant)
        decoded = world.decoder.decode_framed(world.topic, 0, 0, 1_700_000_000_000,
                                              frame(world.schema_id, avro(record)))
        assert decoded is not None
        stored = world.copy(decoded[1])
        assert stored["occurred_at"] == stored["event_time"] == instant


# Most orders of a batch are the usual kind, as on a real topic, so that the columnar path
# takes many and the comparison below has rows to compare.
usual_records = st.fixed_dictionaries({
    "event_id": st.uuids().map(str),
    "customer_id": st.text(st.sampled_from(string.ascii_letters), min_size=1, max_size=8),
    "seq": st.integers(1, 2**63 - 1),
    "occurred_at": instants,
    "order_id": st.text(st.sampled_from(string.ascii_letters + "-"), min_size=1, max_size=8),
    "status": st.sampled_from(["created", "paid", "shipped", "cancelled"]),
    "amount": amounts(),
    "currency": st.text(st.sampled_from(string.ascii_letters), min_size=3, max_size=3),
    "items": st.lists(st.fixed_dictionaries({
        "sku": st.text(st.sampled_from(string.ascii_letters), max_size=8),
        "qty": st.integers(1, 1000),
        "price": st.integers(0, 10**6).map(lambda cents: cents / 100),
    }), min_size=1, max_size=3),
    "channel": st.none() | st.sampled_from(["web", "app", "store"]),
})


@EXAMPLES
@given(batch=st.lists(usual_records | records, min_size=20, max_size=40))
def test_every_avro_order_the_columnar_path_takes_the_row_path_writes_alike(
        world: World, batch: list[dict[str, Any]]) -> None:
    """Framed records through the columnar path (their JSON views, then Arrow): each is
    decided once, and every one it takes, the row path accepts with the same staged
    values (:mod:`tests.unit.decode.test_columnar` holds the JSON side to the same)."""
    contracts = load_contracts(world.settings)
    plan = compile_plan(contracts["order"], world.spec, [], world.settings)
    values = [frame(world.schema_id, avro(record)) for record in batch]
    views = [world.decoder.json_view(world.topic, value) for value in values]
    base = 1_765_000_000_000
    done = plan.decode(views, list(range(len(values))), [base] * len(values), world.topic,
                       [0] * len(values), rendered=True)
    _same_as_the_row_path(world, plan, values, done, "views")


@dataclass
class _Fetched:
    """A fetched record, as the decode stage hands it on."""

    value: bytes | None
    offset: int
    partition: int = 0
    timestamp: int = 1_765_000_000_000
    headers: tuple[Any, ...] = ()


def _damage(data: st.DataObject, value: bytes) -> bytes:
    """``value`` damaged the ways bytes are: cut short, a byte changed, bytes added."""
    how = data.draw(st.sampled_from(["cut", "byte", "extra", "none", "none"]))
    if len(value) < 7:
        return value + b"\x00"
    if how == "cut":
        return value[:data.draw(st.integers(0, len(value) - 1))]
    if how == "byte":
        at = data.draw(st.integers(5, len(value) - 1))
        return value[:at] + bytes([data.draw(st.integers(0, 255))]) + value[at + 1:]
    if how == "extra":
        return value + data.draw(st.binary(min_size=1, max_size=3))
    return value


def _same_as_the_row_path(world: World, plan: Any, values: Sequence[bytes | None],
                          done: Any, label: str) -> None:
    """Each record decided once; every one taken, the row path accepts with the same
    staged values."""
    assert sorted(done.taken + done.fallback) == list(range(len(values)))
    event(f"{label} taken: {'most' if len(done.taken) > len(values) / 2 else 'few'}")
    if done.columns is None:
        return
    for i, block_row in zip(done.taken, _block_values(plan, done.columns), strict=True):
        try:
            decoded = world.decoder.decode_framed(world.topic, 0, i, 1_765_000_000_000,
                                                  values[i])
        except EventRejected as exc:
            raise AssertionError(f"taken, but the row path refuses {values[i]!r}: {exc}") \
                from None
        assert decoded is not None
        assert block_row == _staged_as_row(plan, decoded[1], list(world.spec.columns)), \
            values[i]


@EXAMPLES
@given(batch=st.lists(usual_records | records, min_size=20, max_size=40), data=st.data())
def test_the_batch_reader_takes_only_what_the_row_path_writes_alike(
        world: World, batch: list[dict[str, Any]], data: st.DataObject) -> None:
    """The Avro batch reader (:mod:`processor.decode.formats.avro_columns`) through the
    columnar path, on generated orders and on damaged bytes of them: each record decided
    once, and every one taken, the row path accepts with the same staged values."""
    plan = compile_plan(load_contracts(world.settings)["order"], world.spec, [],
                        world.settings)
    assert world.decoder.framed_topic(world.topic).columns(world.schema_id, plan.read)
    values: list[bytes | None] = [frame(world.schema_id, avro(record)) for record in batch]
    for i in data.draw(st.lists(st.integers(0, len(values) - 1), max_size=6)):
        values[i] = _damage(data, values[i] or b"")
    done = decode_framed_batch(plan, world.decoder, world.topic,
                               [_Fetched(v, i) for i, v in enumerate(values)])
    _same_as_the_row_path(world, plan, values, done, "batch")
