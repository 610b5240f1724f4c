"""The columnar path without servers: which event types it takes and why not, and, on
generated events, that it is one-sided: every record it takes, the row path accepts, with
the same values in every column it stages. (What PostgreSQL makes of both is held equal in
``tests/integration/test_columnar.py``.)"""

from __future__ import annotations

import copy
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.contracts import load_contracts
from processor.core.errors import EventRejected
from processor.core.pgtime import PG_EPOCH_MS
from processor.core.settings import Settings, load_settings
from processor.decode.columnar import ColumnarPlan, Unsupported, compile_plan
from processor.decode.decoder import Decoder
from processor.schema.tables import table_spec
from processor.transform.columnar import arrow_form, takes_unicode
from processor.transform.loader import load_chains, load_transform

ROOT = Path(__file__).resolve().parents[3]


def config(tmp_path: Path, change: Any = None) -> Settings:
    """The example's config without the orders' mapped columns and child tables."""
    data = yaml.safe_load((ROOT / "config/example.yaml").read_text())
    order = data["event_types"]["order"]
    for key in ("columns", "children"):
        order.pop(key, None)
    order["indexes"] = []
    for et in data["event_types"].values():
        et["schema_file"] = str(ROOT / "schemas" / Path(et["schema_file"]).name)
    data["topics"] = [{"name": "orders", "event_type": "order"},
                      {"name": "views", "event_type": "page_view"}]
    if change is not None:
        change(data)
    path = tmp_path / "weir.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_settings(path)


def plan_of(s: Settings, event_type: str) -> ColumnarPlan:
    """The event type's plan, as ``weir run`` compiles it."""
    contract = load_contracts(s)[event_type]
    loaded = [(ref, load_transform(ref)) for ref in s.event_types[event_type].transforms]
    return compile_plan(contract, table_spec(contract, s),
                        [(ref, arrow_form(t)) for ref, t in loaded], s,
                        unicode=all(takes_unicode(t) for _, t in loaded))


def test_the_example_event_types_take_the_columnar_path(tmp_path: Path) -> None:
    s = config(tmp_path)
    assert plan_of(s, "order").staged.names[:3] == ["event_id", "customer_id", "seq"]
    assert "amount" not in plan_of(s, "order").staged.names  # read from raw by PostgreSQL
    assert plan_of(s, "page_view").event_type == "page_view"


def _schema_with(tmp_path: Path, **prop: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        schema = orjson.loads((ROOT / "schemas/page_view.v1.json").read_bytes())
        schema["properties"].update(prop)
        path = tmp_path / "view.json"
        path.write_bytes(orjson.dumps(schema))
        data["event_types"]["page_view"]["schema_file"] = str(path)
    return change


def _agent(**column: Any) -> Any:
    """A config change: the page views with one mapped column ``agent`` of ``column``."""
    return lambda d: d["event_types"]["page_view"].update(columns=[{"name": "agent",
                                                                     **column}])


@pytest.mark.parametrize(("change", "why"), [
    (lambda d: d["pipeline"].update(columnar=False), "pipeline.columnar is off"),
    (lambda d: d["event_types"]["page_view"].update(
        write_mode="upsert", upsert_key=["user_id"], partitioning={"interval": "none"}),
     "not an insert table"),
    (_agent(path="user_agent", type="text", default="-"), "mapped column 'agent': a default"),
    (_agent(path="nowhere", type="text"), "its path is not the schema's properties"),
    (_agent(source="header", header="h", type="bigint"), "the header read as other than text"),
    (_agent(source="topic", type="text"), "from the record's topic"),
    (_agent(path="user_agent", type="jsonb"), "jsonb of"),
    (lambda d: d["event_types"]["page_view"]["transforms"].append(
        "processor.transform.chain:chain"), "has no Arrow form"),
])
def test_what_keeps_an_event_type_on_the_row_path(tmp_path: Path, change: Any,
                                                  why: str) -> None:
    with pytest.raises(Unsupported, match=why):
        plan_of(config(tmp_path, change), "page_view")


@pytest.mark.parametrize(("prop", "why"), [
    ({"x": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}, "type None"),
    ({"x": {"type": "string", "format": "email"}}, "format 'email'"),
    ({"x": {"type": ["string", "integer"]}}, "type"),
    ({"x": {"type": "object"}}, "without properties"),
    ({"x": {"type": "object", "properties": {"a": {"type": "string"}},
            "additionalProperties": False}}, "additionalProperties"),
    ({"x": {"type": "string", "x-weir-column-type": "date"}}, "date of"),
])
def test_a_schema_it_does_not_compile_keeps_the_row_path(tmp_path: Path, prop: Any,
                                                         why: str) -> None:
    with pytest.raises(Unsupported, match=why):
        plan_of(config(tmp_path, _schema_with(tmp_path, **prop)), "page_view")


def test_a_required_field_that_may_be_null_keeps_the_row_path(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        _schema_with(tmp_path, referrer={"type": ["string", "null"]})(data)
        path = Path(data["event_types"]["page_view"]["schema_file"])
        schema = orjson.loads(path.read_bytes())
        schema["required"].append("referrer")
        path.write_bytes(orjson.dumps(schema))
    with pytest.raises(Unsupported, match="may be null"):
        plan_of(config(tmp_path, change), "page_view")


def test_a_fraction_ending_in_zero_is_taken_only_from_rendered_json(tmp_path: Path) -> None:
    """A producer's ``12.50`` is read by the row path as the float 12.5 but by PostgreSQL
    as 12.50; the row path's own rendering of an Avro decimal(12, 2) is read alike by both."""
    plan = plan_of(config(tmp_path), "order")
    event = {"event_id": "0ed90475-9531-485d-9d9d-c9f81818e811", "customer_id": "c-1",
             "seq": 1, "occurred_at": "2026-12-07T10:00:00.120+00:00", "order_id": "o-1",
             "status": "paid", "amount": 12.5, "currency": "eur",
             "items": [{"sku": "s", "qty": 1, "price": 1.5}]}
    values = [orjson.dumps(event).replace(b"12.5", b"12.50")] * 3
    args = (values, [0, 1, 2], [1_765_000_000_000] * 3, "orders", [0] * 3)
    assert plan.decode(*args).fallback == [0, 1, 2]
    assert plan.decode(*args, rendered=True).taken == [0, 1, 2]


def test_a_bound_that_is_not_whole_keeps_avro_topics_on_the_row_path(tmp_path: Path) -> None:
    """An Avro decimal is compared with a bound exactly by the row path, as its nearest
    float by the columnar path: against 0.1 they may differ, so such a topic in Avro takes
    the row path (in JSON both compare the float)."""
    from processor.runtime.columnar_plans import columnar_plans

    def change(data: dict[str, Any]) -> None:
        _schema_with(tmp_path, duration_ms={"type": ["number", "null"], "minimum": 0.1})(data)
        data["schema_registry"] = {"url": "http://127.0.0.1:1"}
        data["topics"] = [{"name": "views", "event_type": "page_view"},
                          {"name": "avro-views", "event_type": "page_view", "format": "avro"},
                          {"name": "proto-views", "event_type": "page_view",
                           "format": "protobuf"}]
    s = config(tmp_path, change)
    assert plan_of(s, "page_view").inexact == ["duration_ms"]
    contracts = load_contracts(s)
    specs = {name: table_spec(c, s) for name, c in contracts.items()}
    assert sorted(columnar_plans(s, contracts, specs)) == ["proto-views", "views"]
    assert plan_of(config(tmp_path), "page_view").inexact == []


# Generated orders: the usual ones, and every field pushed where the checks must catch it.
ASCII = st.text(string.printable, max_size=12)
ODD_TEXT = st.text(max_size=6)  # any Unicode, controls and NUL among it
NUMBERS = st.one_of(st.integers(-5, 2**63 - 1), st.floats(allow_nan=False, width=64),
                    st.decimals(allow_nan=False, places=3, min_value=-10, max_value=1000))
TIMES = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(["2026-02-30T10:00:00Z", "2026-12-07t10:00:00Z", "2026-12-07T10:00:00",
                     "2026-12-07T10:00:00.1234567+01:00", "0001-01-01T00:30:00+01:00",
                     "2026-12-07T23:59:60Z", "9999-12-31T23:30:00-01:00", "2026-12-07"]))


@st.composite
def orders(draw: st.DrawFn) -> bytes:
    event: dict[str, Any] = {
        "event_id": str(draw(st.uuids())), "customer_id": "c-1", "seq": 1,
        "occurred_at": "2026-12-07T10:00:00.120+00:00", "order_id": "o-1",
        "status": "paid", "amount": 19.99, "currency": "eur",
        "items": [{"sku": "s", "qty": 1, "price": 1.5}], "channel": "web",
    }
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from([*sorted(event), "tags", "placed_ms", "shipping", "x"]))
        event[field] = draw(st.one_of(
            ASCII, ODD_TEXT, NUMBERS, TIMES, st.none(), st.booleans(),
            st.lists(st.one_of(ASCII, NUMBERS, st.none()), max_size=3),
            st.fixed_dictionaries({"address": st.fixed_dictionaries(
                {"country": st.one_of(ASCII, NUMBERS)})}),
            st.just(str(draw(st.uuids())).upper()), st.just("{" + str(draw(st.uuids())) + "}"),
        ))
    raw = orjson.dumps(event, option=orjson.OPT_PASSTHROUGH_SUBCLASS,
                       default=str)
    return draw(st.sampled_from([raw, raw, raw, raw.replace(b"19.99", b"19.990"),
                                 raw.replace(b"19.99", b"2e1"), raw[:-1], b" " + raw,
                                 raw.replace(b"19.99", b"12345678901234567890")]))


def _staged_as_row(plan: ColumnarPlan, row: tuple[Any, ...], columns: list[str]
                   ) -> dict[str, Any]:
    """The row path's values of the columnar stage's columns, as the block holds them."""
    names = [*plan.staged.names]
    full = dict(zip(columns, row, strict=True))
    out = {}
    for name in names:
        value = full[name]
        if isinstance(value, UUID) or type(value).__name__ == "UUID":
            value = UUID(str(value)).bytes
        out[name] = value
    return out


def _block_values(plan: ColumnarPlan, table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    for r in rows:
        for name, value in r.items():
            if isinstance(value, datetime):
                r[name] = (value - epoch) // timedelta(microseconds=1)
            elif name == "raw":
                r[name] = value.encode()
    return rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(orders(), min_size=20, max_size=40))
def test_every_record_it_takes_the_row_path_accepts_alike(values: list[bytes]) -> None:
    s = _settings()
    plan = plan_of(s, "order")
    contracts = load_contracts(s)
    decoder = Decoder(s, contracts, load_chains(s))
    spec = table_spec(contracts["order"], s)
    base = 1_765_000_000_000
    done = plan.decode(values, list(range(len(values))), [base + i for i in range(len(values))],
                       "orders", [0] * len(values))
    assert sorted(done.taken + done.fallback) == list(range(len(values)))  # each decided once
    assert done.dropped == []  # the order's transform drops nothing
    if done.columns is None:
        return
    got = _block_values(plan, done.columns)
    for i, block_row in zip(done.taken, got, strict=True):
        try:
            decoded = decoder.decode("orders", 0, i, base + i, values[i])
        except EventRejected as exc:
            raise AssertionError(f"taken, but the row path refuses {values[i]!r}: {exc}") \
                from None
        assert decoded is not None
        assert block_row == _staged_as_row(plan, decoded[1], list(spec.columns)), values[i]
        assert block_row["kafka_timestamp"] == (base + i - PG_EPOCH_MS) * 1000


_CACHE: dict[str, Settings] = {}


def _settings() -> Settings:
    if "s" not in _CACHE:
        import tempfile
        _CACHE["s"] = config(Path(tempfile.mkdtemp()))
    return _CACHE["s"]


def test_copy_of_the_plan_is_not_needed_between_batches(tmp_path: Path) -> None:
    """A plan holds no state from one batch to the next: the same values give the same
    block twice."""
    plan = plan_of(config(tmp_path), "page_view")
    views = [orjson.dumps({"event_id": "0ed90475-9531-485d-9d9d-c9f81818e811",
                           "user_id": "u", "seq": i + 1,
                           "occurred_at": "2026-12-07T10:00:00Z", "session_id": "s",
                           "url": f"https://a.example/p/{i}?q=1"}) for i in range(20)]
    args = (views, list(range(20)), [1_765_000_000_000] * 20, "views", [0] * 20)
    first, second = plan.decode(*args), plan.decode(*copy.deepcopy(args))
    assert first.columns is not None
    assert second.columns is not None
    assert first.columns.equals(second.columns)
    assert first.columns.column("url").to_pylist()[0] == "https://a.example/p/0"


async def test_a_block_turned_back_into_rows_is_what_the_row_path_makes(
        tmp_path: Path) -> None:
    """Through the decode stage: a fetch of two partitions becomes one block each (and the
    records the path is not sure of, rows); ``expand`` gives, by the row path alone, one
    row per record of the block, equal to what the row path makes of them; a fetch too
    small to pay for the columnar path takes the row path."""
    from dataclasses import dataclass, field

    from processor.batch.buffer import LaneBuffer
    from processor.core.progress import ProgressBook
    from processor.core.records import Block, Row
    from processor.decode.columnar import MIN_RECORDS
    from processor.decode.stage import DecodeStage
    from processor.partition.router import Router

    @dataclass
    class Record:
        offset: int
        value: bytes
        partition: int
        topic: str = "orders"
        timestamp: int = 1_765_000_000_000
        key: bytes | None = b"k"
        headers: list[tuple[str, bytes]] = field(default_factory=list)

    s = config(tmp_path)
    decoder = Decoder(s, load_contracts(s), load_chains(s))
    buffer = LaneBuffer(10_000, 10**8)
    stage = DecodeStage(decoder, Router([buffer], frozenset({"orders"})),
                        columnar={"orders": plan_of(s, "order")})
    event = {"customer_id": "c-1", "seq": 1, "occurred_at": "2026-12-07T10:00:00.120+00:00",
             "order_id": "o-1", "status": "paid", "amount": 19.99, "currency": "eur",
             "items": [{"sku": "s", "qty": 1, "price": 1.5}]}

    def records(partition: int, count: int) -> list[Record]:
        return [Record(i, orjson.dumps({**event, "event_id": f"{i:08d}-0000-4000-8000-"
                                                             f"{partition:012d}"}), partition)
                for i in range(count)]

    book = ProgressBook()
    first, second = records(0, 300), records(1, MIN_RECORDS - 300)
    first[7].value = first[7].value.replace(b"19.99", b"19.90")  # the row path's
    await stage.dispatch([(book.assign(("orders", 0), None), first),
                          (book.assign(("orders", 1), None), second)])
    items = await buffer.take(10_000, 10**8, 0)
    blocks = [i for i in items if isinstance(i, Block)]
    assert [(b.chunk.tp, b.rows) for b in blocks] == [(("orders", 0), 299),
                                                      (("orders", 1), MIN_RECORDS - 300)]
    assert [type(i) for i in items if not isinstance(i, Block)] == [Row]  # the odd literal
    for block, fetched in zip(blocks, (first, second), strict=True):
        assert block.columns.column("kafka_partition").to_pylist() == \
            [block.chunk.tp[1]] * block.rows
        expanded = block.expand()
        assert all(isinstance(r, Row) for r in expanded)
        again = [decoder.decode("orders", r.partition, r.offset, r.timestamp, r.value)
                 for r in fetched if (r.partition, r.offset) != (0, 7)]
        assert [r.values for r in expanded if isinstance(r, Row)] == [d[1] for d in again if d]
    small = records(2, MIN_RECORDS - 1)
    await stage.dispatch([(book.assign(("orders", 2), None), small)])
    items = await buffer.take(10_000, 10**8, 0)
    assert [type(i) for i in items] == [Row] * len(small)


# The orders with the example's mapped columns (a path through a nullable object, an epoch
# in milliseconds, a header, the key), their keys and headers generated too.
def mapped_config(tmp_path: Path) -> Settings:
    """The example's config with the orders' mapped columns, without child tables."""
    shipped = yaml.safe_load((ROOT / "config/example.yaml").read_text())
    columns = shipped["event_types"]["order"]["columns"]
    return config(tmp_path, lambda d: d["event_types"]["order"].update(columns=columns))


def test_the_example_mapped_columns_take_the_columnar_path(tmp_path: Path) -> None:
    plan = plan_of(mapped_config(tmp_path), "order")
    assert plan.staged.names[-11:-6] == ["ship_country", "ship_city", "placed_at", "tenant",
                                         "kafka_key"]
    assert [name for name, _ in plan.from_records] == ["tenant", "kafka_key"]


KEYS = st.one_of(st.none(), st.just(b"c-1"), st.binary(max_size=4),
                 st.text(max_size=3).map(lambda t: t.encode("utf-8", "surrogatepass")))
HEADERS = st.lists(st.tuples(st.sampled_from(["tenant", "other"]),
                             st.one_of(st.none(), KEYS)), max_size=3)
PLACED = st.one_of(st.integers(-2, 2**63 - 1), st.sampled_from(
    [253_402_300_799_999, 253_402_300_800_000, -62_135_596_800_000, -62_135_596_800_001]),
    st.none(), st.floats(allow_nan=False))
SHIPPING = st.one_of(st.none(), st.just({}), st.fixed_dictionaries(
    {"address": st.one_of(st.none(), st.just("x"), st.fixed_dictionaries(
        {}, optional={"country": st.one_of(ASCII, ODD_TEXT, NUMBERS, st.none()),
                      "city": ASCII}))}, optional={"method": ASCII}))


@st.composite
def rich_orders(draw: st.DrawFn) -> tuple[bytes, bytes | None, list[Any]]:
    event: dict[str, Any] = {
        "event_id": str(draw(st.uuids())), "customer_id": "c-1", "seq": 1,
        "occurred_at": "2026-12-07T10:00:00.120+00:00", "order_id": "o-1",
        "status": "paid", "amount": 19.99, "currency": "eur",
        "items": [{"sku": "s", "qty": 1, "price": 1.5}], "channel": "web",
        "shipping": draw(SHIPPING), "placed_ms": draw(PLACED),
    }
    for name in ("shipping", "placed_ms"):
        if draw(st.booleans()) and event[name] is None:
            del event[name]
    return orjson.dumps(event, default=str), draw(KEYS), draw(HEADERS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rich_orders(), min_size=20, max_size=40))
def test_every_mapped_record_it_takes_the_row_path_maps_alike(
        records: list[tuple[bytes, bytes | None, list[Any]]]) -> None:
    if "m" not in _CACHE:
        import tempfile
        _CACHE["m"] = mapped_config(Path(tempfile.mkdtemp()))
    s = _CACHE["m"]
    plan = plan_of(s, "order")
    contracts = load_contracts(s)
    decoder = Decoder(s, contracts, load_chains(s))
    spec = table_spec(contracts["order"], s)
    values = [v for v, _, _ in records]
    keys = [k for _, k, _ in records]
    headers = [h for _, _, h in records]
    base = 1_765_000_000_000
    n = len(values)
    done = plan.decode(values, list(range(n)), [base + i for i in range(n)], "orders",
                       [0] * n, keys=keys, headers=headers)
    assert sorted(done.taken + done.fallback) == list(range(n))
    if done.columns is None:
        return
    for i, block_row in zip(done.taken, _block_values(plan, done.columns), strict=True):
        try:
            decoded = decoder.decode("orders", 0, i, base + i, values[i], headers[i], keys[i])
        except EventRejected as exc:
            raise AssertionError(f"taken, but the row path refuses {records[i]!r}: {exc}") \
                from None
        assert decoded is not None
        assert block_row == _staged_as_row(plan, decoded[1], list(spec.columns)), records[i]


def test_mapped_values_the_row_path_refuses_take_the_row_path(tmp_path: Path) -> None:
    """A key or header that is not UTF-8 or holds a NUL, an epoch past the year 9999: not
    written here (the row path dead-letters them); a missing header and a null object on
    the path are NULL; the last header of a name counts."""
    plan = plan_of(mapped_config(tmp_path), "order")
    event = {"event_id": "0ed90475-9531-485d-9d9d-c9f81818e811", "customer_id": "c-1",
             "seq": 1, "occurred_at": "2026-12-07T10:00:00Z", "order_id": "o-1",
             "status": "paid", "amount": 12.5, "currency": "eur",
             "items": [{"sku": "s", "qty": 1, "price": 1.5}], "placed_ms": 1_765_000_000_000,
             "shipping": {"address": {"country": "DE", "city": "Berlin"}}}
    odd = [(event, b"\xff", []), (event, b"a\x00", []),
           (event, b"k", [("tenant", b"\xc3")]), (event, b"k", [("tenant", b"\x00")]),
           ({**event, "placed_ms": 253_402_300_800_000}, b"k", [])]
    fine = [(event, b"k", [("tenant", b"a"), ("tenant", b"b")]),
            ({**event, "shipping": None}, None, [("tenant", None)]),
            ({**event, "placed_ms": 253_402_300_799_999}, "ü".encode(), [])]
    both = odd + fine
    done = plan.decode([orjson.dumps(e) for e, _, _ in both], list(range(len(both))),
                       [1_765_000_000_000] * len(both), "orders", [0] * len(both),
                       keys=[k for _, k, _ in both], headers=[h for _, _, h in both])
    assert done.fallback == list(range(len(odd)))
    assert done.columns is not None
    got = done.columns.select(["ship_country", "tenant", "kafka_key"]).to_pylist()
    assert got == [{"ship_country": "DE", "tenant": "b", "kafka_key": "k"},
                   {"ship_country": None, "tenant": None, "kafka_key": None},
                   {"ship_country": "DE", "tenant": None, "kafka_key": "ü"}]
    assert done.columns.column("placed_at")[2].as_py() == datetime(
        9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


@pytest.mark.parametrize("inside", [b"\xed\xa0\x80", b"\xc0\xae", b"\xf4\x90\x80\x80", b"\xff",
                                    b"\xc3"])
def test_text_beyond_ascii_is_taken_only_as_well_formed_utf8(tmp_path: Path,
                                                             inside: bytes) -> None:
    """Arrow's reader lets malformed UTF-8 through, the row path refuses it: an encoded
    surrogate, an overlong form, past U+10FFFF, a stray or cut byte take the row path;
    well-formed text beyond ASCII (Köln, Ōsaka) is taken."""
    plan = plan_of(mapped_config(tmp_path), "order")
    assert plan.unicode  # the example's transforms have forms for any text
    event = {"event_id": "0ed90475-9531-485d-9d9d-c9f81818e811", "customer_id": "c-1",
             "seq": 1, "occurred_at": "2026-12-07T10:00:00Z", "order_id": "o-1",
             "status": "paid", "amount": 12.5, "currency": "eur",
             "items": [{"sku": "s", "qty": 1, "price": 1.5}]}
    good = [orjson.dumps({**event, "order_id": city}) for city in ("Köln", "Ōsaka", "😀")]
    bad = orjson.dumps(event).replace(b'"o-1"', b'"o-' + inside + b'"')
    values = [*good, bad]
    done = plan.decode(values, [0, 1, 2, 3], [1_765_000_000_000] * 4, "orders", [0] * 4,
                       keys=[b"k"] * 4, headers=[[]] * 4)
    assert done.fallback == [3]
    assert done.columns is not None
    assert done.columns.column("order_id").to_pylist() == ["Köln", "Ōsaka", "😀"]


def test_a_form_for_ascii_only_keeps_text_beyond_ascii_on_the_row_path(tmp_path: Path) -> None:
    s = config(tmp_path)
    contract = load_contracts(s)["order"]
    forms = [(ref, arrow_form(load_transform(ref))) for ref in s.event_types["order"].transforms]
    plan = compile_plan(contract, table_spec(contract, s), forms, s)  # unicode not said
    event = {"event_id": "0ed90475-9531-485d-9d9d-c9f81818e811", "customer_id": "c-1",
             "seq": 1, "occurred_at": "2026-12-07T10:00:00Z", "order_id": "Köln",
             "status": "paid", "amount": 12.5, "currency": "eur",
             "items": [{"sku": "s", "qty": 1, "price": 1.5}]}
    values = [orjson.dumps(event), orjson.dumps({**event, "order_id": "Koeln"})]
    done = plan.decode(values, [0, 1], [1_765_000_000_000] * 2, "orders", [0, 0])
    assert (done.taken, done.fallback) == ([1], [0])
