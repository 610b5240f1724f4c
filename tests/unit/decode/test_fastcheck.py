from __future__ import annotations

from typing import Any

import pytest

from processor.decode.fastcheck import Shape, compile_fast_check, shape_of


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


@pytest.mark.parametrize("schema", [
    {"type": "integer"},  # an event is an object
    {"type": "object", "additionalProperties": False},
    obj(a={"minimum": 1}),  # a keyword without a type
    obj(a={"type": "number", "multipleOf": 2}),
    obj(a={"type": "integer", "minimum": 0.5}),  # msgspec takes no float bound on an int
    obj(a={"type": "string", "pattern": "^a", "format": "date-time"}),
    obj(a={"type": ["string", "integer"], "enum": ["a", 1]}),
    obj(a={"type": "string", "format": "regex"}),
    obj(a={"$ref": "#/definitions/x"}),
    obj(a={"type": ["object", "null"], "properties": {"b": {}}, "items": {}}),  # not array
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"},
])
def test_schemas_it_does_not_compile_get_no_fast_check(schema: dict[str, Any]) -> None:
    assert compile_fast_check(schema) is None


def test_a_top_level_pattern_is_tested_after_the_type() -> None:
    fast = compile_fast_check(obj(code={"type": ["string", "null"], "pattern": "^[A-Z]{3}$"},
                                  at={"type": "string", "format": "date-time"}))
    assert fast is not None
    assert fast.exact({"code": "EUR", "at": "2026-11-25T10:00:00Z"})
    assert fast.exact({"code": None})
    assert not fast.exact({"code": "EUR\n"})  # "$" is "\Z", as in fastjsonschema
    assert not fast.exact({"at": "2026-11-25 10:00:00Z"})
    assert not fast.exact({"at": "x2026-11-25T10:00:00Z"})  # a format matches, anchored


def test_a_nested_pattern_stays_in_the_type() -> None:
    fast = compile_fast_check(obj(codes={"type": "array", "items": {
        "type": "string", "pattern": "^[A-Z]{3}$"}}))
    assert fast is not None
    assert fast.exact({"codes": ["EUR", "USD"]})
    assert not fast.exact({"codes": ["EUR", "usd"]})


def test_integers_are_ints_and_numbers_never_bools() -> None:
    fast = compile_fast_check(obj(n={"type": "integer"}, x={"type": "number", "minimum": 0}))
    assert fast is not None
    assert fast.exact({"n": 1, "x": 1})
    assert fast.exact({"x": 0.5})
    for event in ({"n": 1.0}, {"n": True}, {"x": True}, {"x": -1}, {"x": "1"}):
        assert not fast.exact(event)  # not sure: fastjsonschema decides (1.0 is an integer)


def test_a_field_named_like_a_keyword_or_an_attribute() -> None:
    fast = compile_fast_check({"type": "object", "required": ["class", "__struct_fields__"],
                               "properties": {"class": {"type": "string"}}})
    assert fast is not None
    assert fast.exact({"class": "a", "__struct_fields__": [1]})
    assert not fast.exact({"class": "a"})


def test_shapes() -> None:
    assert shape_of(obj(a={"type": "string"})) == Shape(1, 1, 0)
    assert shape_of(obj(a={"type": "array", "maxItems": 5, "items": obj(b={"type": "null"})})
                    ) == Shape(3, 1, 5)
    assert shape_of(obj(a={"type": "array", "items": {"type": "integer"}})) == Shape(2, 1, None)
    assert shape_of(obj(a={"type": "object"})).depth is None  # any object
    assert shape_of({"type": "object", "required": ["a"]}).depth is None  # a of any value
    assert shape_of(obj(a={"type": "array"})).depth is None  # items of any value
