"""The msgspec check never says *valid* where fastjsonschema would reject.

The same promise as the quick check's (``test_quickcheck.py``, whose generated events and
made-up schemas are reused here): it may say *not sure* for a valid event, never *valid*
for an invalid one. Made-up schemas are put under a property of an object (the check
compiles an event's schema, always an object) and at the top level of one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import fastjsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.commands.produce.sample import SampleEvents
from processor.decode.fastcheck import compile_fast_check
from tests.property.test_quickcheck import ORDER, PAGE_VIEW, json_values, keyword_schemas, near


def agrees(schema: dict[str, Any], event: Any) -> str:
    """Check the promise for one event; say what was checked: ``"not compiled"`` (the quick
    check or fastjsonschema answers instead), ``"valid"`` or ``"not sure"``."""
    fast = compile_fast_check(schema)
    if fast is None:
        return "not compiled"
    if fast.exact(event):
        assert fast.lenient(event)  # exact is the stricter of the two
    if fast.lenient(event):
        fastjsonschema.validate(schema, event)  # raises if the check was wrong
        return "valid"
    return "not sure"


def require_compiled(schemas: int, compiled: int, seen: Counter[str]) -> None:
    """A property over made-up schemas says something only if some of them compiled (most do
    not: the quick check answers for those), and the compiled checks said *valid* for some
    events: the answer the property is about."""
    assert compiled >= 5, f"only {compiled} of {schemas} made-up schemas compiled: {dict(seen)}"
    assert seen["valid"], f"the compiled checks never said valid: {dict(seen)}"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([ORDER, PAGE_VIEW]).flatmap(lambda s: st.tuples(st.just(s), near(s))))
def test_never_valid_where_fastjsonschema_rejects(case: tuple[dict[str, Any], Any]) -> None:
    assert agrees(*case) != "not compiled"  # the example schemas always compile


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([ORDER, PAGE_VIEW]), json_values)
def test_arbitrary_json_is_never_wrongly_valid(schema: dict[str, Any], event: Any) -> None:
    assert agrees(schema, event) != "not compiled"


def test_made_up_schemas() -> None:
    seen: Counter[str] = Counter()
    examples = compiled = 0

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(keyword_schemas, keyword_schemas, json_values, json_values,
           st.lists(st.sampled_from(["x", "y"]), unique=True))
    def check(inner: dict[str, Any], other: dict[str, Any], x: Any, y: Any,
              required: list[str]) -> None:
        nonlocal examples, compiled
        examples += 1
        schema = {"type": "object", "properties": {"x": inner, "y": {
            "type": ["array", "null"], "items": other}}, "required": required}
        answers = [agrees(schema, {"x": x, "y": y}), agrees(schema, {"x": x}),
                   agrees(schema, {"x": x, "y": [y, x]}),
                   agrees(schema, {"x": x, "y": y, "z": x})]
        seen.update(answers)
        compiled += answers[0] != "not compiled"

    check()
    require_compiled(examples, compiled, seen)


def test_made_up_top_level_keywords() -> None:
    seen: Counter[str] = Counter()
    examples = 0

    # More examples than a plain property would need: few made-up schemas compile, and of
    # those few say valid for an arbitrary value.
    @settings(max_examples=500, deadline=None)
    @given(keyword_schemas, json_values)
    def check(schema: dict[str, Any], event: Any) -> None:
        nonlocal examples
        examples += 1
        seen[agrees({**schema, "type": "object"}, event)] += 1

    check()
    require_compiled(examples, seen["valid"] + seen["not sure"], seen)


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
