"""A quick yes-or-don't-know check of an event against its JSON Schema, for the usual valid event.

fastjsonschema's generated validator does more per field than a valid event needs (a set of
the keys, a removal per property, an error message ready for every branch), and validation
was the largest single cost of decoding. This compiles the same schema into a plain
predicate that only says *valid* or *not sure*:

- ``True`` means fastjsonschema accepts the event too: every check here is the same test as
  fastjsonschema's, or a stricter one (``integer`` takes only ``int``, never an integral
  float), so a false positive cannot happen.
- ``False`` means "ask fastjsonschema": the decoder then runs the full validator, which
  rejects with its usual message, or accepts what this check was too strict for.

Only a subset of keywords is compiled; a schema that uses anything else (``default``, which
fastjsonschema fills in, ``$ref``, ``oneOf``, ``additionalProperties``, ...) gets no quick
check and is always validated in full. ``tests/property/test_quickcheck.py`` checks the
one-sided promise on generated events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# fastjsonschema's own draft detection and format regexes, so that both checks agree on
# what a format means. They are internals: if a release moves them, the quick check is
# simply off (every event goes through fastjsonschema), never a failure at start.
try:
    from fastjsonschema import _get_code_generator_class
    from fastjsonschema.draft04 import DOLLAR_FINDER, CodeGeneratorDraft04
    INTERNALS = True
except ImportError:  # pragma: no cover - depends on the installed fastjsonschema
    INTERNALS = False

QuickCheck = Callable[[Any], bool]

# Keywords that describe and never constrain (fastjsonschema ignores them too).
ANNOTATIONS = frozenset({"title", "description", "$schema", "$id", "$comment", "examples",
                         "version", "readOnly", "writeOnly", "deprecated"})
TYPE_TESTS = {
    "string": "type({v}) is str",
    "integer": "type({v}) is int",
    "number": "(type({v}) is int or type({v}) is float)",
    "boolean": "type({v}) is bool",
    "null": "{v} is None",
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
}
NUMBERS = ("integer", "number")


class Unsupported(Exception):
    """The schema uses a keyword or form the quick check does not compile."""


class _Compiler:
    def __init__(self, formats: Mapping[str, str]) -> None:
        self.formats = formats  # the format regexes of the draft fastjsonschema uses
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self._names = 0
        self.known: str | None = None  # the single type of the schema being compiled
        self.required: frozenset[str] = frozenset()  # its required properties

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def const(self, value: Any) -> str:
        key = self.name("c")
        self.consts[key] = value
        return key

    def fail_if(self, indent: int, condition: str) -> None:
        self.lines.append(" " * indent + f"if {condition}: return False")

    def schema(self, s: Any, v: str, indent: int) -> None:
        if not isinstance(s, Mapping):
            raise Unsupported("boolean or malformed schema")
        # The type first: once it is known, the other keywords need no type guard of their
        # own, and those that only apply to another type drop out (as in fastjsonschema).
        kind = s.get("type")
        self.known = kind if isinstance(kind, str) else None
        keywords = sorted(s, key=lambda k: ("type", "required").index(k)
                          if k in ("type", "required") else 2)
        for keyword in keywords:
            if keyword in ANNOTATIONS or keyword.startswith("x-"):
                continue
            handler = getattr(self, "k_" + keyword.replace("$", "_"), None)
            if handler is None:
                raise Unsupported(keyword)
            handler(s[keyword], v, indent)

    def guard(self, kinds: tuple[str, ...], v: str) -> str | None:
        """The type test a keyword that applies to ``kinds`` needs, or None if it cannot apply."""
        known = self.known
        if known is None:
            return "(" + " or ".join(TYPE_TESTS[k].format(v=v) for k in kinds) + ") and "
        return "" if known in kinds else None

    def open_guard(self, kinds: tuple[str, ...], v: str, indent: int) -> int | None:
        """Open an ``if`` on :meth:`guard` where one is needed; the indent of its body, or
        None if keywords for ``kinds`` cannot apply."""
        guard = self.guard(kinds, v)
        if guard is None:
            return None
        if guard:
            self.lines.append(" " * indent + f"if {guard}True:")
            return indent + 1
        return indent

    def k_type(self, value: Any, v: str, indent: int) -> None:
        types = [value] if isinstance(value, str) else list(value)
        if not types or any(t not in TYPE_TESTS for t in types):
            raise Unsupported(f"type {value!r}")
        self.fail_if(indent, "not (" + " or ".join(TYPE_TESTS[t].format(v=v) for t in types)
                     + ")")

    def k_enum(self, value: Any, v: str, indent: int) -> None:
        # Only strings and null: Python's == would let True match 1 and 1 match 1.0.
        if not isinstance(value, list) or any(x is not None and not isinstance(x, str)
                                              for x in value):
            raise Unsupported("enum of other than strings and null")
        strings = self.const(frozenset(x for x in value if isinstance(x, str)))
        test = f"(type({v}) is str and {v} in {strings})"
        if None in value:
            test = f"({v} is None or {test})"
        self.fail_if(indent, f"not {test}")

    def _guarded(self, kinds: tuple[str, ...], v: str, indent: int, condition: str) -> None:
        guard = self.guard(kinds, v)
        if guard is not None:
            self.fail_if(indent, guard + condition)

    def _bound(self, value: Any, keyword: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Unsupported(f"{keyword} {value!r}")
        return value

    def k_minimum(self, value: Any, v: str, indent: int) -> None:
        self._guarded(NUMBERS, v, indent, f"{v} < {self._bound(value, 'minimum')!r}")

    def k_maximum(self, value: Any, v: str, indent: int) -> None:
        self._guarded(NUMBERS, v, indent, f"{v} > {self._bound(value, 'maximum')!r}")

    def _length(self, value: Any, keyword: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Unsupported(f"{keyword} {value!r}")
        return value

    def k_minLength(self, value: Any, v: str, indent: int) -> None:
        self._guarded(("string",), v, indent, f"len({v}) < {self._length(value, 'minLength')}")

    def k_maxLength(self, value: Any, v: str, indent: int) -> None:
        self._guarded(("string",), v, indent, f"len({v}) > {self._length(value, 'maxLength')}")

    def k_minItems(self, value: Any, v: str, indent: int) -> None:
        self._guarded(("array",), v, indent, f"len({v}) < {self._length(value, 'minItems')}")

    def k_maxItems(self, value: Any, v: str, indent: int) -> None:
        self._guarded(("array",), v, indent, f"len({v}) > {self._length(value, 'maxItems')}")

    def k_pattern(self, value: Any, v: str, indent: int) -> None:
        # The same regex fastjsonschema compiles: "$" becomes "\Z" (no trailing newline).
        regex = self.const(re.compile(DOLLAR_FINDER.sub(r"\\Z", str(value))))
        self._guarded(("string",), v, indent, f"not {regex}.search({v})")

    def k_format(self, value: Any, v: str, indent: int) -> None:
        regexes = self.formats
        if value == "regex":
            raise Unsupported("format regex")
        if value not in regexes:
            return  # fastjsonschema ignores formats it does not know (uuid, for one)
        regex = self.const(re.compile(regexes[value]))
        self._guarded(("string",), v, indent, f"not {regex}.match({v})")

    def k_required(self, value: Any, v: str, indent: int) -> None:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise Unsupported("required")
        names = self.const(frozenset(value))
        self.required = frozenset(value)
        self._guarded(("object",), v, indent, f"not {v}.keys() >= {names}")

    def k_properties(self, value: Any, v: str, indent: int) -> None:
        if not isinstance(value, Mapping):
            raise Unsupported("properties")
        inner = self.open_guard(("object",), v, indent)
        if inner is None:
            return
        indent, required = inner, self.required
        for prop, sub in value.items():
            item = self.name("p")
            if prop in required:  # present: the required check ran first
                self.lines.append(" " * indent + f"{item} = {v}[{prop!r}]")
                self.block(sub, item, indent)
            else:
                self.lines.append(" " * indent + f"{item} = {v}.get({prop!r}, MISSING)")
                self.lines.append(" " * indent + f"if {item} is not MISSING:")
                self.block(sub, item, indent + 1)

    def k_items(self, value: Any, v: str, indent: int) -> None:
        if not isinstance(value, Mapping):
            raise Unsupported("items as a list (tuple validation) or a boolean")
        inner = self.open_guard(("array",), v, indent)
        if inner is None:
            return
        item = self.name("i")
        self.lines.append(" " * inner + f"for {item} in {v}:")
        self.block(value, item, inner + 1)

    def block(self, s: Any, v: str, indent: int) -> None:
        """A sub-schema's checks, in a block of their own (with a fresh known type)."""
        self.lines.append(" " * indent + "pass")
        saved = self.known, self.required
        self.required = frozenset()
        self.schema(s, v, indent)
        self.known, self.required = saved


def compile_quick_check(schema: Mapping[str, Any]) -> QuickCheck | None:
    """A predicate that is True only for events the schema accepts; None if not compilable."""
    # The draft (so the formats) fastjsonschema picks for this schema; draft-04 differs in
    # exclusiveMinimum and friends and is left to fastjsonschema.
    if not INTERNALS:
        return None
    generator = _get_code_generator_class(dict(schema))
    formats = getattr(generator, "FORMAT_REGEXS", None)
    if generator is CodeGeneratorDraft04 or not isinstance(formats, dict):
        return None
    compiler = _Compiler(formats)
    try:
        compiler.schema(schema, "event", 1)
    except Unsupported:
        return None
    source = "def check(event):\n" + "\n".join(compiler.lines) + "\n return True\n"
    namespace: dict[str, Any] = {"MISSING": object(), **compiler.consts}
    exec(compile(source, "<quick check>", "exec"), namespace)  # noqa: S102 - our own code
    check: QuickCheck = namespace["check"]
    return check
