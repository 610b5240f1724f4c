"""The JSON Schema as a msgspec type: a yes-or-don't-know check in C, generated once per schema.

The quick check (``quickcheck.py``) made validation a short generated Python function; it
was still the largest single cost of decoding an order (1.9 us of 7.1). msgspec checks a
decoded event against a typed ``Struct`` in C: ``msgspec.convert(event, T)`` takes 0.5 us
for the same order. This compiles a schema into such a type, with the same one-sided
promise as the quick check:

- ``True`` means fastjsonschema accepts the event too. Every constraint here is the same
  test as fastjsonschema's, or a stricter one: ``integer`` takes only ``int``, never an
  integral float or a bool; ``number`` takes ``int`` or ``float``, never a bool; ``pattern``
  is the same regex (``$`` as ``\\Z``, searched), a ``format`` the same regex of the draft
  fastjsonschema picks (matched); ``enum`` only of strings and null.
- ``False`` means "ask fastjsonschema", which rejects with its usual message or accepts what
  this check was too strict for. Rejection reasons and messages are therefore unchanged.

msgspec tests a ``pattern`` at about three times the cost of calling the regex from Python
(0.5 us more for the date-time format, inside a Struct), so the regexes of top-level
properties are left out of the type and tested after it, from Python; nested ones stay in.

A schema using anything else (``default``, ``$ref``, ``oneOf``, ``additionalProperties``,
``multipleOf``, a keyword without a ``type`` beside it, a union msgspec cannot tell apart,
draft-04) gets no such check; the decoder then falls back to the quick check.
``tests/property/test_fastcheck.py`` holds the promise on generated events and schemas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from processor.decode.quickcheck import ANNOTATIONS, INTERNALS

if INTERNALS:
    from fastjsonschema import _get_code_generator_class
    from fastjsonschema.draft04 import DOLLAR_FINDER, CodeGeneratorDraft04

Check = Callable[[Any], bool]

_SIMPLE = {"integer": int, "boolean": bool, "null": type(None)}
_BOUNDS = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt",
           "exclusiveMaximum": "lt"}
_LENGTHS = {"minLength": "min_length", "maxLength": "max_length"}
_ITEMS = {"minItems": "min_length", "maxItems": "max_length"}
# The keywords each type compiles; a schema with any other is not compiled.
_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern", "format", "enum"},
    "integer": set(_BOUNDS), "number": set(_BOUNDS),
    "array": {"items", "minItems", "maxItems"},
    "object": {"properties", "required"},
    "boolean": set(), "null": {"enum"},
}


class Unsupported(Exception):
    """The schema uses a keyword or a form this compiler does not turn into a type."""


class _Compiler:
    def __init__(self, formats: Mapping[str, str], exact: bool) -> None:
        self.formats = formats
        self.exact = exact  # refuse fields the schema does not name, at every level
        self.structs = 0
        # (property, regex) of the top-level properties' patterns, tested after the type.
        self.lifted: list[tuple[str, re.Pattern[str]]] = []

    def schema(self, s: Any, lift: str | None = None, top: bool = False) -> Any:
        """The type of ``s``; a string pattern of ``s`` itself goes to :attr:`lifted` under
        ``lift`` (a top-level property), if given, instead of into the type. ``top``: ``s``
        is the event's own schema, whose properties' patterns are lifted."""
        if not isinstance(s, Mapping):
            raise Unsupported("boolean or malformed schema")
        keywords = {k for k in s if k not in ANNOTATIONS and not k.startswith("x-")}
        kind = s.get("type")
        if kind is None:
            if keywords:
                raise Unsupported("keywords without a type")
            return Any
        types = [kind] if isinstance(kind, str) else kind
        if not isinstance(types, list) or not types or len(set(types)) != len(types):
            raise Unsupported(f"type {kind!r}")
        if keywords - {"type"} - set().union(*(_KEYWORDS.get(t, set()) for t in types)):
            raise Unsupported(f"keywords {sorted(keywords)} for type {kind!r}")
        if "enum" in s:
            return self.enum(s, types)
        members = [self.one(t, s, lift, top) for t in types]
        union = members[0]
        for member in members[1:]:
            union = union | member
        return union

    def one(self, kind: Any, s: Mapping[str, Any], lift: str | None, top: bool) -> Any:
        if kind in _SIMPLE:
            return self.bounded(_SIMPLE[kind], s) if kind == "integer" else _SIMPLE[kind]
        if kind == "number":
            return self.bounded(int, s) | self.bounded(float, s)
        if kind == "string":
            return self.string(s, lift)
        if kind == "array":
            return self.array(s)
        if kind == "object":
            return self.object(s, top)
        raise Unsupported(f"type {kind!r}")

    def bounded(self, base: type, s: Mapping[str, Any]) -> Any:
        meta: dict[str, Any] = {}
        for keyword, name in _BOUNDS.items():
            if keyword in s:
                bound = s[keyword]
                # msgspec refuses a float bound on an int; a bool is no bound at all.
                if isinstance(bound, bool) or not isinstance(bound, int | float) or (
                        base is int and not isinstance(bound, int)):
                    raise Unsupported(f"{keyword} {bound!r}")
                meta[name] = bound
        return Annotated[base, msgspec.Meta(**meta)] if meta else base

    def string(self, s: Mapping[str, Any], lift: str | None) -> Any:
        meta: dict[str, Any] = {}
        for keyword, name in _LENGTHS.items():
            if keyword in s:
                meta[name] = _length(s[keyword], keyword)
        patterns = []
        if "pattern" in s:
            # fastjsonschema searches, with "$" as "\Z" (no trailing newline); so does msgspec.
            patterns.append(DOLLAR_FINDER.sub(r"\\Z", str(s["pattern"])))
        fmt = s.get("format")
        if fmt == "regex":
            raise Unsupported("format regex")
        if isinstance(fmt, str) and fmt in self.formats:  # unknown ones (uuid) are ignored
            patterns.append(r"\A(?:" + self.formats[fmt] + ")")  # it matches: anchored
        if len(patterns) > 1:
            raise Unsupported("pattern and format together")
        if patterns and lift is not None:
            self.lifted.append((lift, re.compile(patterns[0])))
        elif patterns:
            meta["pattern"] = patterns[0]
        return Annotated[str, msgspec.Meta(**meta)] if meta else str

    def enum(self, s: Mapping[str, Any], types: list[Any]) -> Any:
        # Only strings and null, and no other constraint beside them: Python's == would let
        # True match 1 and 1 match 1.0, which JSON Schema's enum does not.
        values = s["enum"]
        if set(s) & {"minLength", "maxLength", "pattern", "format"} or not isinstance(
                values, list) or any(v is not None and not isinstance(v, str) for v in values):
            raise Unsupported("enum of other than strings and null, or with constraints")
        strings = tuple(dict.fromkeys(v for v in values if isinstance(v, str)
                                      and "string" in types))
        nullable = None in values and "null" in types
        if not strings:
            raise Unsupported("enum without a string")  # so rare it needs no type of its own
        member: Any = Literal.__getitem__(strings)
        return member | None if nullable else member

    def array(self, s: Mapping[str, Any]) -> Any:
        items = s.get("items", {})
        if not isinstance(items, Mapping):
            raise Unsupported("items as a list (tuple validation) or a boolean")
        base: Any = list[self.schema(items)]  # type: ignore[misc]
        meta: dict[str, Any] = {name: _length(s[k], k) for k, name in _ITEMS.items() if k in s}
        return Annotated[base, msgspec.Meta(**meta)] if meta else base

    def object(self, s: Mapping[str, Any], top: bool) -> Any:
        props = s.get("properties", {})
        required = s.get("required", [])
        if not isinstance(props, Mapping) or not isinstance(required, list) or not all(
                isinstance(r, str) for r in required):
            raise Unsupported("properties or required")
        if not props and not required:
            return dict
        fields: list[Any] = []
        rename = {}
        # Each property by its own name in the event, whatever it is (a Python keyword, an
        # attribute of Struct): the field is f<i>, renamed to the key.
        for i, name in enumerate(dict.fromkeys([*props, *required])):
            sub = self.schema(props[name], name if top else None) if name in props else Any
            rename[f"f{i}"] = name
            fields.append((f"f{i}", sub) if name in required else
                          (f"f{i}", sub, msgspec.UNSET))
        fields.sort(key=len)  # required fields first, as a Struct wants them
        self.structs += 1
        # gc=False: a Struct made by the check holds only what orjson decoded, never itself,
        # so it needs no cycle collection; untracked, it costs less to make (0.28 -> 0.20 us
        # for an object holding a list of two) and counts nothing towards the next one.
        return msgspec.defstruct(f"Object{self.structs}", fields, rename=rename,
                                 forbid_unknown_fields=self.exact, gc=False)


def _length(value: Any, keyword: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unsupported(f"{keyword} {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Shape:
    """Bounds on every event the exact check accepts (None: unbounded)."""

    depth: int | None  # nesting, counted as Limits counts it (the event itself is 1)
    fields: int  # the most fields of any object
    items: int | None  # the longest array (its maxItems)


@dataclass(frozen=True, slots=True)
class FastCheck:
    """One schema's checks: True only for events the schema accepts."""

    exact: Check  # fields the schema does not name refused: the event has the schema's shape
    lenient: Check  # other fields allowed (as the schema allows them)
    shape: Shape


def schema_type(schema: Mapping[str, Any], exact: bool = False
                ) -> tuple[Any, list[tuple[str, re.Pattern[str]]]]:
    """The msgspec type and the top-level regexes that together accept only what ``schema``
    accepts (and, if ``exact``, only objects without fields it does not name); raises
    :class:`Unsupported` if the schema cannot be compiled."""
    if not INTERNALS:
        raise Unsupported("fastjsonschema's internals moved")
    generator = _get_code_generator_class(dict(schema))
    formats = getattr(generator, "FORMAT_REGEXS", None)
    if generator is CodeGeneratorDraft04 or not isinstance(formats, dict):
        raise Unsupported("draft-04, or a draft without format regexes")
    compiler = _Compiler(formats, exact)
    try:
        if schema.get("type") != "object":
            raise Unsupported("the event is not an object")
        kind = compiler.schema(schema, top=True)
        msgspec.json.Decoder(kind)  # refuses, with a TypeError, a union it cannot tell apart
    except (TypeError, re.error) as exc:
        raise Unsupported(str(exc)) from None
    return kind, compiler.lifted


def shape_of(s: Mapping[str, Any]) -> Shape:
    """The bounds of a schema the compiler took, for events without unnamed fields."""
    kinds = s.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    depth: int | None = 0 if kinds else None  # no type: anything
    fields = 0
    items: int | None = 0
    children: list[Shape] = []
    if "object" in kinds:
        props = s.get("properties", {})
        names = {*props, *s.get("required", [])}
        fields = len(names)
        if (not props and not names) or set(names) - set(props):
            depth = None  # a plain dict, or a field of any value
        children += [shape_of(p) for p in props.values()]
    if "array" in kinds:
        most = s.get("maxItems")
        items = most if isinstance(most, int) else None
        children.append(shape_of(s["items"]) if "items" in s else Shape(None, 0, 0))
    for child in children:
        depth = None if depth is None or child.depth is None else max(depth, child.depth)
        fields = max(fields, child.fields)
        items = None if items is None or child.items is None else max(items, child.items)
    if depth is not None and ("object" in kinds or "array" in kinds):
        depth += 1
    return Shape(depth, fields, items)


def _check(kind: Any, lifted: list[tuple[str, re.Pattern[str]]]) -> Check:
    convert, invalid = msgspec.convert, msgspec.ValidationError
    tests = tuple((name, regex.search) for name, regex in lifted)

    def check(event: Any) -> bool:
        try:
            convert(event, kind)
        except invalid:
            return False
        for name, search in tests:
            value = event.get(name)
            if type(value) is str and search(value) is None:
                return False
        return True

    return check


def compile_fast_check(schema: Mapping[str, Any]) -> FastCheck | None:
    """The schema's checks; None if it cannot be compiled."""
    try:
        exact, lenient = schema_type(schema, exact=True), schema_type(schema)
    except Unsupported:
        return None
    return FastCheck(_check(*exact), _check(*lenient), shape_of(schema))
