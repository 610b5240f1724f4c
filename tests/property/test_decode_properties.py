"""Arbitrary bytes and JSON at decode and validate: a row, a drop, or a classified rejection.

Never an unhandled exception: anything else would stop a lane on one bad event.
"""

from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.contracts import load_contracts
from processor.core.errors import EventRejected
from processor.core.settings import load_settings
from processor.decode.decoder import Decoder
from processor.transform.loader import load_chains

CONFIG = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
SETTINGS = load_settings(CONFIG)
DECODER = Decoder(SETTINGS, load_contracts(SETTINGS), load_chains(SETTINGS))
REASONS = {"empty_value", "too_large", "decode_error", "not_an_object", "unknown_event_type",
           "schema_violation", "transform_error", "conversion_error", "too_deep", "too_long",
           "too_many_fields"}

# orjson encodes integers up to 64 bits; larger ones cannot be in a test payload it writes.
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30,
)
order_like = st.fixed_dictionaries(
    {}, optional={
        "event_id": st.uuids().map(str) | st.text(max_size=40),
        "customer_id": st.text(max_size=70), "seq": ints | st.text(max_size=5),
        "occurred_at": st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=30),
        "order_id": st.text(max_size=70), "status": st.sampled_from(
            ["created", "paid", "shipped", "cancelled", "lost"]),
        "amount": st.floats(allow_nan=False) | ints, "currency": st.text(max_size=4),
        "items": st.lists(st.fixed_dictionaries({"sku": st.text(max_size=5),
                                                 "qty": ints,
                                                 "price": st.floats(allow_nan=False)}),
                          max_size=3),
    },
)


def outcome(value: bytes | None, topic: str = "weir.orders") -> str:
    """'row', 'dropped', or the rejection's reason (with its message); nothing else escapes."""
    try:
        result = DECODER.decode(topic, 0, 0, 1_764_064_800_000, value)
    except EventRejected as exc:
        return exc.reason if str(exc) else "rejected without a message"
    return "dropped" if result is None else "row"


def check(value: bytes | None, topic: str = "weir.orders") -> None:
    assert outcome(value, topic) in {*REASONS, "row", "dropped"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(value: bytes) -> None:
    check(value)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    check(orjson.dumps(value))


@settings(max_examples=400, deadline=None)
@given(order_like, st.sampled_from(["weir.orders", "weir.page_views"]))
def test_almost_valid_events(event: dict[str, object], topic: str) -> None:
    check(orjson.dumps(event), topic)
