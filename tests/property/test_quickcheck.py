"""The quick schema check never says *valid* where fastjsonschema would reject.

It may say *not sure* for a valid event (the decoder then asks fastjsonschema), but a false
*valid* would let a bad event into a table. Events are generated near the example schemas'
edges (wrong types, missing fields, out-of-range numbers, bad patterns and formats) and for
made-up schemas built from the keywords the quick check compiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.commands.produce.sample import SampleEvents
from processor.decode.quickcheck import compile_quick_check

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ORDER = orjson.loads((SCHEMAS / "order.v1.json").read_bytes())
PAGE_VIEW = orjson.loads((SCHEMAS / "page_view.v1.json").read_bytes())

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = (st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(max_size=70)
           | st.sampled_from(["created", "web", "EUR", "eu", "2026-11-25T10:00:00Z",
                              "2026-11-25T10:00:00", "2026-02-30T10:00:00Z",
                              "2026-11-25T10:00:00.123+01:00", "EUR\n", ""]))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)


def near(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Events with the schema's property names, each a plausible or a wrong value."""
    props = schema["properties"]
    item = st.fixed_dictionaries({}, optional={"sku": json_values, "qty": json_values,
                                               "price": json_values})
    values = {name: (st.lists(item | json_values, max_size=3) | json_values
                     if name == "items" else json_values) for name in props}
    return st.fixed_dictionaries({}, optional=values)


def agrees(schema: dict[str, Any], event: Any) -> None:
    quick = compile_quick_check(schema)
    assert quick is not None
    if quick(event):
        fastjsonschema.validate(schema, event)  # raises if the quick check was wrong


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([ORDER, PAGE_VIEW]).flatmap(lambda s: st.tuples(st.just(s), near(s))))
def test_never_valid_where_fastjsonschema_rejects(case: tuple[dict[str, Any], Any]) -> None:
    agrees(*case)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([ORDER, PAGE_VIEW]), json_values)
def test_arbitrary_json_is_never_wrongly_valid(schema: dict[str, Any], event: Any) -> None:
    agrees(schema, event)


keyword_schemas = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["string", "integer", "number", "boolean", "null", "object",
                             "array", ["string", "null"], ["integer", "string"]]),
    "minimum": st.integers(-5, 5), "maximum": st.integers(-5, 5) | st.floats(-5, 5),
    "minLength": st.integers(0, 3), "maxLength": st.integers(0, 3),
    "minItems": st.integers(0, 2), "maxItems": st.integers(0, 2),
    "pattern": st.sampled_from(["^a", "b$", "^[A-Z]{2}$"]),
    "format": st.sampled_from(["date-time", "uuid", "email", "date"]),
    "enum": st.lists(st.none() | st.text(max_size=2), min_size=1, max_size=3),
    "required": st.lists(st.sampled_from(["a", "b"]), unique=True),
    "properties": st.just({"a": {"type": "integer", "minimum": 0}, "b": {"type": "string"}}),
    "items": st.just({"type": ["integer", "null"]}),
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keyword_schemas, json_values)
def test_made_up_schemas(schema: dict[str, Any], event: Any) -> None:
    agrees(schema, event)


def test_valid_sample_events_pass_quickly() -> None:
    sample = SampleEvents(seed=3)
    for name, schema in (("order", ORDER), ("page_view", PAGE_VIEW)):
        quick = compile_quick_check(schema)
        assert quick is not None
        for _ in range(200):
            assert quick(orjson.loads(orjson.dumps(sample.make(name)[1])))
