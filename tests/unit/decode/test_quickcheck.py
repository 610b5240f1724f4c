"""What the quick schema check compiles, and what it leaves to fastjsonschema."""

from __future__ import annotations

from typing import Any

import pytest

from processor.decode.quickcheck import compile_quick_check


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}},
    {"type": "object", "additionalProperties": False},
    {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": "object", "properties": {"a": {"$ref": "#/definitions/a"}}},
    {"type": "integer", "exclusiveMinimum": 0},
    {"enum": [1, True]},
    {"type": "array", "items": [{"type": "string"}]},
    {"type": "string", "format": "regex"},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"},
])
def test_schemas_it_does_not_compile_get_no_quick_check(schema: dict[str, Any]) -> None:
    assert compile_quick_check(schema) is None


def test_stricter_than_the_schema_means_not_sure_never_invalid() -> None:
    quick = compile_quick_check({"type": "integer"})
    assert quick is not None
    assert quick(3)
    assert not quick(3.0)  # fastjsonschema accepts it; the decoder asks fastjsonschema


def test_a_trailing_newline_does_not_match_a_dollar_pattern() -> None:
    quick = compile_quick_check({"type": "string", "pattern": "^[A-Z]{3}$"})
    assert quick is not None
    assert quick("EUR")
    assert not quick("EUR\n")
