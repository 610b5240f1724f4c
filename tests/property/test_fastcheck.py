"""The msgspec check never says *valid* where fastjsonschema would reject.

The same promise as the quick check's (``test_quickcheck.py``, whose generated events and
made-up schemas are reused here): it may say *not sure* for a valid event, never *valid*
for an invalid one. Made-up schemas are put under a property of an object (the check
compiles an event's schema, always an object) and at the top level of one.
"""

from __future__ import annotations

from typing import Any

import fastjsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.decode.fastcheck import compile_fast_check
from processor.produce.sample import SampleEvents
from tests.property.test_quickcheck import ORDER, PAGE_VIEW, json_values, keyword_schemas, near


def agrees(schema: dict[str, Any], event: Any) -> None:
    fast = compile_fast_check(schema)
    if fast is None:
        return  # not compiled: the quick check or fastjsonschema answers instead
    if fast.exact(event):
        assert fast.lenient(event)  # exact is the stricter of the two
    if fast.lenient(event):
        fastjsonschema.validate(schema, event)  # raises if the check was wrong


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([ORDER, PAGE_VIEW]).flatmap(lambda s: st.tuples(st.just(s), near(s))))
def test_never_valid_where_fastjsonschema_rejects(case: tuple[dict[str, Any], Any]) -> None:
    agrees(*case)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([ORDER, PAGE_VIEW]), json_values)
def test_arbitrary_json_is_never_wrongly_valid(schema: dict[str, Any], event: Any) -> None:
    agrees(schema, event)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keyword_schemas, keyword_schemas, json_values, json_values,
       st.lists(st.sampled_from(["x", "y"]), unique=True))
def test_made_up_schemas(inner: dict[str, Any], other: dict[str, Any], x: Any, y: Any,
                         required: list[str]) -> None:
    schema = {"type": "object", "properties": {"x": inner, "y": {
        "type": ["array", "null"], "items": other}}, "required": required}
    agrees(schema, {"x": x, "y": y})
    agrees(schema, {"x": x})
    agrees(schema, {"x": x, "y": [y, x]})
    agrees(schema, {"x": x, "y": y, "z": x})


@settings(max_examples=200, deadline=None)
@given(keyword_schemas, json_values)
def test_made_up_top_level_keywords(schema: dict[str, Any], event: Any) -> None:
    agrees({**schema, "type": "object"}, event)


def test_sample_events_pass_both_checks() -> None:
    sample = SampleEvents(seed=5)
    for name, schema in (("order", ORDER), ("page_view", PAGE_VIEW)):
        fast = compile_fast_check(schema)
        assert fast is not None
        for _ in range(200):
            event = orjson.loads(orjson.dumps(sample.make(name)[1]))
            assert fast.exact(event)
            assert fast.lenient(event)
            assert not fast.exact({**event, "unnamed": 1})  # lenient only
            assert fast.lenient({**event, "unnamed": 1})
