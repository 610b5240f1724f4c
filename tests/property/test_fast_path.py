"""The fast paths change nothing: every event gets the row, or the rejection, of the full path.

The full path is the decoder with both fast paths switched off: no msgspec check (every
event goes through the shape limits, the raw check and fastjsonschema), no generated row
builder (every row from the generic ``_row``). Rows are compared value by value with their
types and exact forms (``Decimal('19.99')`` is not ``Decimal('19.990')``, ``-0.0`` is not
``0.0``); rejections by reason, stage and message.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.commands.produce.sample import SampleEvents
from processor.contracts import load_contracts
from processor.core.errors import EventRejected
from processor.core.records import Header
from processor.core.settings import load_settings
from processor.decode.children import compile_children, compile_items
from processor.decode.decoder import Decoder
from processor.decode.mapped import compile_mapped
from processor.registry.parse import schema_book
from processor.transform.loader import load_chains

CONFIG = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
SCHEMAS = CONFIG.parent.parent / "schemas"
TOPICS = {"order": "weir.orders", "page_view": "weir.page_views"}
NOW_MS = 1_764_064_800_000
Headers = list[Header] | tuple[()]


def _no_row(*_: Any) -> tuple[Any, ...]:
    raise AssertionError("the full path builds no row itself")


def full_path(decoder: Decoder) -> Decoder:
    """The same decoder with the fast paths off (the child rows' too)."""
    plans = {name: dataclasses.replace(
        plan, quick_check=None, exact_check=None, fast_bytes=-1, build=_no_row,
        children=compile_children(plan.contract.children, plan.names, name,
                                  keep_absent=False, fast=False))
             for name, plan in decoder._plans.items()}
    decoder._plans = plans
    decoder._topic_plan = {topic: plans[name] for topic, name in decoder._topic_type.items()
                           if name is not None}
    return decoder


def _decoders(config: Path) -> tuple[Decoder, Decoder]:
    s = load_settings(config)
    contracts = load_contracts(s)
    chains = load_chains(s)
    # The example config has an Avro topic too: its decoders need the (lazy) schema book.
    return (Decoder(s, contracts, chains, schema_book(s)),
            full_path(Decoder(s, contracts, chains, schema_book(s))))


FAST, FULL = _decoders(CONFIG)
[_LINES] = FAST._plans["order"].contract.children
_LINE_COLUMNS = [compile_mapped(c, "order") for c in _LINES.settings.columns]
ITEMS = compile_items(_LINES, "order", _LINE_COLUMNS)


def exact(value: Any) -> Any:
    """A value with its type and exact form, for comparing rows."""
    return type(value), repr(value)


def outcome(decoder: Decoder, value: bytes, topic: str, timestamp_ms: int = NOW_MS,
            key: bytes | None = None, headers: Headers = ()) -> Any:
    try:
        result = decoder.decode(topic, 5, 77, timestamp_ms, value, headers, key)
    except EventRejected as exc:
        return "rejected", exc.reason, exc.stage, str(exc)
    if result is None:
        return "dropped"
    children = [None if rows is None else [[exact(v) for v in r] for r in rows]
                for rows in (result[2] if len(result) == 3 else ())]
    return result[0], [exact(v) for v in result[1]], children


def agree(value: bytes, topic: str, timestamp_ms: int = NOW_MS,
          decoders: tuple[Decoder, Decoder] = (FAST, FULL), key: bytes | None = None,
          headers: Headers = ()) -> Any:
    fast = outcome(decoders[0], value, topic, timestamp_ms, key, headers)
    assert fast == outcome(decoders[1], value, topic, timestamp_ms, key, headers)
    return fast


ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
texts = (st.text(max_size=12) | st.sampled_from(["", "EUR", "eur", "EUR\n", "é", "a\x00b",
                                                 "web", "paid", "lost", "x" * 70]))
times = (st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())
         | st.sampled_from(["2026-11-25T10:00:00Z", "2026-11-25T10:00:00.123+00:00",
                            "2026-11-25 10:00:00Z", "2026-11-25T10:00:00", "2026-02-29T00:00:00Z",
                            "2024-02-29T23:59:60Z", "0001-01-01T00:00:00+01:00",
                            "9999-12-31T23:59:59.999999-01:00", "2026-11-25T10:00:00.1234567Z",
                            "2026-11-25t10:00:00z", "2026-11-25T10:00:00+0100",
                            "2026-11-25T10:00:00,5Z", "2026-11-25T10:00:00+01",
                            "\u0662026-11-25T10:00:00Z"]))
ids = st.uuids().map(str) | st.uuids().map(lambda u: u.hex.upper()) | st.sampled_from(
    ["{12345678-1234-5678-1234-567812345678}", "not-a-uuid", "", "1234"])
scalars = st.none() | st.booleans() | ints | floats | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=5), inner, max_size=3), max_leaves=10)


def field(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value of the field, now and then anything at all."""
    return st.one_of(*strategies, json_values)


items = st.lists(st.fixed_dictionaries(
    {}, optional={"sku": field(texts), "qty": field(ints, st.just(1.0)),
                  "price": field(floats, ints), "extra": json_values}), max_size=3)
addresses = st.fixed_dictionaries({}, optional={
    "address": field(st.fixed_dictionaries({}, optional={"country": field(texts),
                                                         "city": field(texts)})),
    "method": field(texts)})
ORDER = {
    "event_id": field(ids), "customer_id": field(texts), "seq": field(ints, st.just(3.0)),
    "occurred_at": field(times), "order_id": field(texts),
    "status": field(st.sampled_from(["created", "paid", "shipped", "cancelled", "Paid"])),
    "amount": field(floats, ints, st.sampled_from([0.0, -0.0, 19.99, 1e300, 1.2e21])),
    "currency": field(texts), "items": field(items), "channel": field(
        st.sampled_from(["web", "app", "store", None, "fax"])),
    # What the example maps (rich orders): a nested address, tags, an epoch time.
    "shipping": field(addresses, st.none()), "tags": field(st.lists(texts, max_size=3)),
    "placed_ms": field(ints, st.sampled_from([0, 1_764_064_800_123, 253_402_300_800_000])),
}
PAGE_VIEW = {
    "event_id": field(ids), "user_id": field(texts), "seq": field(ints),
    "occurred_at": field(times), "session_id": field(texts),
    "url": field(st.sampled_from(["https://x/", "https://x/a?b=c#d", "http://[::1/"]), texts),
    "referrer": field(texts), "user_agent": field(texts, st.just("Googlebot/2.1")),
    "duration_ms": field(ints),
}


def events(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly complete events (so the fast paths are reached), some fields missing or extra."""
    return st.tuples(st.fixed_dictionaries(fields),
                     st.sets(st.sampled_from(sorted(fields)), max_size=2),
                     st.dictionaries(st.sampled_from(["note", "tags", "k\x00"]), json_values,
                                     max_size=1)).map(
        lambda t: {**{k: v for k, v in t[0].items() if k not in t[1]}, **t[2]})


def valid(event_type: str, seed: int) -> dict[str, Any]:
    # Orders as the example maps them (rich: a shipping address, tags, an epoch time).
    return SampleEvents(seed=seed, rich=seed % 4 != 0).make(event_type)[1]


keys = st.none() | st.binary(max_size=8) | texts.map(lambda t: t.encode("utf-8", "replace"))
header_lists = st.lists(st.tuples(st.sampled_from(["tenant", "other"]),
                                  st.none() | st.binary(max_size=6) | st.just(b"acme")),
                        max_size=2)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["order", "page_view"]).flatmap(
    lambda t: st.tuples(st.just(t), events(ORDER if t == "order" else PAGE_VIEW))),
    keys, header_lists)
def test_almost_valid_events_agree(case: tuple[str, dict[str, Any]], key: bytes | None,
                                   headers: Headers) -> None:
    event_type, event = case
    agree(orjson.dumps(event), TOPICS[event_type], key=key, headers=headers)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), keys, header_lists)
def test_rich_orders_agree(seed: int, key: bytes | None, headers: Headers) -> None:
    """The orders the example maps, with their mapped columns and child rows."""
    sample = SampleEvents(seed=seed, rich=True)
    sku, event = sample.make("order")
    agree(orjson.dumps(event), "weir.orders", key=key or sku.encode(),
          headers=headers or sample.headers("order", sku))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["order", "page_view"]), st.integers(0, 10_000),
       st.sampled_from(list(ORDER) + list(PAGE_VIEW)), json_values)
def test_one_changed_field_of_a_valid_event_agrees(
    event_type: str, seed: int, name: str, value: Any
) -> None:
    event = {**valid(event_type, seed), name: value}
    agree(orjson.dumps(event), TOPICS[event_type])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["order", "page_view"]), st.integers(0, 10_000),
       st.sampled_from([b" ", b"\n", b'\\u0000', b"\\u00e9", b"\\/", b"1e400", b"\\ud800"]),
       st.integers(0, 400))
def test_escapes_and_odd_bytes_agree(event_type: str, seed: int, insert: bytes,
                                     at: int) -> None:
    raw = orjson.dumps(valid(event_type, seed))
    at = min(at, len(raw))
    agree(raw[:at] + insert + raw[at:], TOPICS[event_type])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | json_values.map(orjson.dumps),
       st.sampled_from(list(TOPICS.values())))
def test_arbitrary_bytes_agree(value: bytes, topic: str) -> None:
    agree(value, topic)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10_000), st.integers(-(2**63), 2**63 - 1)
       | st.sampled_from([253_402_300_799_999, 253_402_300_800_000, -62_135_596_800_000,
                          -62_135_596_800_001]))
def test_kafka_timestamps_agree(seed: int, timestamp_ms: int) -> None:
    agree(orjson.dumps(valid("order", seed)), "weir.orders", timestamp_ms)


def test_sample_events_take_both_fast_paths() -> None:
    """The usual event is answered by msgspec and the generated builder, not the slow paths."""
    sample = SampleEvents(seed=11)
    for event_type, topic in TOPICS.items():
        plan = FAST._plans[event_type]
        assert plan.exact_check is not None
        for _ in range(200):
            event = sample.make(event_type)[1]
            raw = orjson.dumps(event)
            assert len(raw) <= plan.fast_bytes
            assert plan.exact_check(event)
            assert plan.build(event, topic, 0, 1, NOW_MS, raw) == FULL._row(
                FULL._plans[event_type], event, topic, 0, 1, NOW_MS, raw)
            agree(raw, topic)


def test_rich_orders_take_the_fast_paths_too() -> None:
    """A rich order's mapped columns and line items come from the generated code."""
    sample = SampleEvents(seed=12, rich=True)
    plan = FAST._plans["order"]
    for _ in range(200):
        key, event = sample.make("order")
        raw = orjson.dumps(event)
        assert plan.exact_check is not None
        assert plan.exact_check(event)
        headers = sample.headers("order", key)
        row = plan.build(event, "weir.orders", 0, 1, NOW_MS, raw, key.encode(), headers)
        assert row == FULL._row(FULL._plans["order"], event, "weir.orders", 0, 1, NOW_MS, raw,
                                key.encode(), headers)
        # The generated items code answers the usual array itself (it raises on any doubt).
        head = FAST.decode("weir.orders", 0, 1, NOW_MS, raw, headers, key.encode())
        assert len(head) == 3
        width = len(_LINES.head) + len(_LINES.origin)  # the parent's part of each item row
        assert ITEMS(event["items"], head[2][0][0][:width]) == head[2][0]


def test_a_tight_limit_is_not_skipped(tmp_path: Path) -> None:
    """Limits below what the schema's own shape allows: the size bound gives way to the walk."""
    text = CONFIG.read_text().replace("../schemas", str(SCHEMAS)).replace(
        "pipeline:\n  lanes: 4", "pipeline:\n  lanes: 4\n  max_json_depth: 2\n"
        "  max_string_length: 40\n  max_array_length: 2\n  max_object_fields: 10")
    config = tmp_path / "tight.yaml"
    config.write_text(text)
    decoders = _decoders(config)
    assert decoders[0]._plans["order"].fast_bytes == -1  # depth 3: never skipped
    assert decoders[0]._plans["page_view"].fast_bytes == 40  # no array: the string bound
    reasons = set()
    for seed in range(30):
        for event_type, topic in TOPICS.items():
            reasons.add(agree(orjson.dumps(valid(event_type, seed)), topic, NOW_MS,
                              decoders)[1])
    assert reasons >= {"too_deep", "too_long"}


row_values = st.recursive(
    scalars | st.sampled_from([Decimal("1.50"), "x\ud800", "\x00", 2**64, uuid.uuid4(),
                               float("inf"), float("nan"), b"bytes", "2026-11-25T10:00:00Z",
                               str(uuid.uuid4())]) | ids | times,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=2), max_leaves=5)


class Text(str):
    """A str subclass: the text check refuses it (``type(value) is str``), so must the builder."""


def arbitrary_fields(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the event type's fields, each any value a transform could leave."""
    return st.fixed_dictionaries({}, optional={
        name: row_values | st.sampled_from([Text("a"), True])
        for name in (ORDER if event_type == "order" else PAGE_VIEW)})


def changed_valid_event(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """A valid event with up to two fields replaced by any value, or removed: whole events,
    so the builder is reached with a full row, not only with a near-empty one."""
    names = sorted(ORDER if event_type == "order" else PAGE_VIEW)
    return st.tuples(
        st.integers(0, 10_000),
        st.dictionaries(st.sampled_from(names), row_values | st.sampled_from([Text("a"), True]),
                        max_size=2),
        st.sets(st.sampled_from(names), max_size=1),
    ).map(lambda t: {k: v for k, v in {**valid(event_type, t[0]), **t[1]}.items()
                     if k not in t[2]})


def test_the_builder_returns_the_generic_row_or_leaves_it() -> None:
    """Any transform's output: the generated builder's row is the generic one, or it raises.

    The property is vacuous if the builder raised for everything (or built only near-empty
    events): the rows it built from whole events (all but two of the contract's fields at
    most missing) are counted, per event type, and a share of the examples must be among
    them.
    """
    whole_rows: Counter[str] = Counter()
    examples = 0

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(["order", "page_view"]).flatmap(lambda t: st.tuples(
        st.just(t), arbitrary_fields(t) | changed_valid_event(t))))
    def check(case: tuple[str, dict[str, Any]]) -> None:
        nonlocal examples
        examples += 1
        event_type, event = case
        plan = FAST._plans[event_type]
        try:
            built = plan.build(event, TOPICS[event_type], 0, 1, NOW_MS, b"{}")
        except Exception:  # noqa: BLE001 - any exception sends the event to the generic builder
            return
        generic = FAST._row(plan, event, TOPICS[event_type], 0, 1, NOW_MS, b"{}")
        assert [exact(v) for v in built] == [exact(v) for v in generic]
        fields = ORDER if event_type == "order" else PAGE_VIEW
        if len(fields.keys() & event.keys()) >= len(fields) - 2:
            whole_rows[event_type] += 1

    check()
    assert set(whole_rows) == {"order", "page_view"}, (
        f"no whole event of some type took the fast path: {dict(whole_rows)} of {examples}")
    assert whole_rows.total() >= examples // 20, (
        f"the builder built only {whole_rows.total()} whole rows of {examples} examples: "
        "the property compared almost nothing")
