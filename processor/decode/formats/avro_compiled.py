"""A reader generated once per Avro writer schema: one record's bytes to its event in one call.

fastavro reads a record through a file object, a method call per value: for the example
order that was 5 us, five times orjson's parse of the same event as JSON. The code generated
here reads the bytes by index, as straight-line Python per field (a varint in one or two
operations when it is one byte, as most are), converts each logical value as it is read
(:mod:`.avro_values`, the converters fastavro's path uses too), and checks that the record
ends where the value does.

It reads what a writer schema alone describes: records, enums, arrays, maps, fixed, unions,
the primitives and the logical types. A schema it does not cover (a recursive type) gets
None from :func:`compile_reader`, and fastavro reads it; so does a record that must be
resolved to a reader schema other than by dropping and adding fields.

What it raises on bytes that are not a record of the schema: :class:`Unreadable` (a length
or index that points past the value, a union or enum index out of range, a varint longer than
64 bits, a boolean byte other than 0 or 1), :class:`Trailing`, or what Python raises on the
bytes themselves (``IndexError`` past the end, ``UnicodeDecodeError``, ``struct.error``);
:class:`~.avro_values.Unfitting` for a logical value no column holds, with its path.
``tests/property/test_avro_compiled.py`` holds it to fastavro's reading on random schemas
and records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from processor.decode.formats.avro_values import (
    Unfitting,
    base64_text,
    logical_converter,
    named_types,
)

Read = Callable[[bytes, int], dict[str, Any]]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string",
                         "bytes"})


# The least bytes a value of each primitive takes.
_LEAST = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8,
          "string": 1, "bytes": 1}
# The values of the one-byte varints, zig-zag decoded: one lookup instead of four operations.
_ZIGZAG = tuple((n >> 1) ^ -(n & 1) for n in range(0x80))
# The same as lengths: a negative one is past the end of any value.
_LENGTH = tuple(z if z >= 0 else 1 << 62 for z in _ZIGZAG)
# Items that take no bytes (nulls, empty records) have no bound from the value's size.
_ZERO_SIZE_ITEMS = 10_000


_AMBIGUOUS: dict[str, Any] = {}  # a short name that names types of two namespaces


class Unreadable(ValueError):
    """The bytes are not a value of the schema (and Python's own errors did not say so)."""


class Trailing(ValueError):
    """Bytes follow the record: the value is not one record of its schema."""

    def __init__(self, extra: int) -> None:
        super().__init__(f"{extra} bytes follow the Avro record")
        self.extra = extra


class Uncovered(Exception):
    """The schema has a construct the generated code does not read (fastavro does)."""


def _long_tail(data: bytes, n: int, p: int) -> tuple[int, int]:
    """The rest of a varint whose first byte ``n`` had its continuation bit set; returns
    the zig-zag-decoded value and the next position."""
    # Unrolled to six bytes (a millisecond time since 1970 takes six), then a loop.
    b = data[p]
    n = (n & 0x7F) | (b & 0x7F) << 7
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 1
    b = data[p + 1]
    n |= (b & 0x7F) << 14
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 2
    b = data[p + 2]
    n |= (b & 0x7F) << 21
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 3
    b = data[p + 3]
    n |= (b & 0x7F) << 28
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 4
    b = data[p + 4]
    n |= (b & 0x7F) << 35
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 5
    p += 5
    shift = 42
    while True:
        b = data[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:  # the tenth byte's bits past the 64th
                raise Unreadable("a varint longer than 64 bits")
            return (n >> 1) ^ -(n & 1), p
        shift += 7
        if shift > 63:
            raise Unreadable("a varint longer than 64 bits")


def _short(need: int, have: int) -> Unreadable:
    if need < 0 or need >= _LENGTH[1]:
        return Unreadable("a negative length")
    return Unreadable(f"a length of {need} bytes where {have} remain")


class _Emitter:
    """Writes the reading code of one schema; ``lines`` holds the function's body."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "tail": _long_tail, "short": _short, "Unreadable": Unreadable,
            "Unfitting": Unfitting, "Trailing": Trailing,
            "unpack_f": struct.Struct("<f").unpack_from,
            "unpack_d": struct.Struct("<d").unpack_from, "b64": base64_text,
            "ZIGZAG": _ZIGZAG, "LENGTH": _LENGTH,
        }
        named, shared = named_types(schema)
        # A short name two namespaces share would need the reference's own namespace to
        # resolve: such a schema is left to fastavro.
        self.named = named | dict.fromkeys(shared, _AMBIGUOUS)
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}{self._count}"

    def constant(self, stem: str, value: Any) -> str:
        name = self.fresh(stem)
        self.namespace[name] = value
        return name

    def emit(self, depth: int, *lines: str) -> None:
        pad = "    " * depth
        self.lines.extend(pad + line for line in lines)

    def varint(self, depth: int, target: str) -> None:
        """``target`` = the next zig-zag varint; one byte (the usual) without a call."""
        self.emit(depth, "n = data[p]", "p += 1", "if n > 0x7F:",
                  f"    {target}, p = tail(data, n, p)", "else:", f"    {target} = ZIGZAG[n]")

    def span(self, depth: int) -> None:
        """Reads a length; leaves ``q`` = where the bytes it counts end."""
        # A one-byte length is one lookup, with a negative one past any value's end.
        self.emit(depth, "n = data[p]", "p += 1", "if n > 0x7F:", "    q, p = tail(data, n, p)",
                  "    if q < 0:", "        raise short(q, size - p)", "    q += p",
                  "else:", "    q = p + LENGTH[n]", "if q > size:",
                  "    raise short(q - p, size - p)")

    def value(self, node: Any, target: str, depth: int, path: tuple[str, ...],
              seen: tuple[str, ...]) -> None:
        """Code that reads one value of ``node`` into ``target``."""
        if isinstance(node, str):
            if node in _PRIMITIVES:
                self._primitive(node, target, depth)
                return
            if node in seen:
                raise Uncovered(f"the recursive type {node}")
            named = self.named.get(node)
            if named is None or named is _AMBIGUOUS:
                raise Uncovered(f"the unknown or ambiguous type {node}")
            self.value(named, target, depth, path, (*seen, node))
            return
        if isinstance(node, list):
            self._union(node, target, depth, path, seen)
            return
        convert = logical_converter(node)
        if convert is not None:
            self._logical(node, convert, target, depth, path)
        else:
            self._complex(node, target, depth, path, seen)

    def _logical(self, node: dict[str, Any], convert: Any, target: str, depth: int,
                 path: tuple[str, ...]) -> None:
        self._underlying(node, depth)
        name = self.constant("logical", convert)
        where = self.constant("path", list(path))
        # A value no column holds is refused once the record is read: bytes that are not
        # one record at all are the first thing wrong with them.
        self.emit(depth, "try:", f"    {target} = {name}(x)", "except Unfitting as exc:",
                  f"    exc.path[:0] = {where}", f"    {target} = None",
                  "    unfit = unfit or exc")

    def _complex(self, node: dict[str, Any], target: str, depth: int, path: tuple[str, ...],
                 seen: tuple[str, ...]) -> None:
        kind = node.get("type")
        if kind in ("record", "error"):
            self._record(node, target, depth, path, seen)
        elif kind == "enum":
            symbols = self.constant("symbols", tuple(node["symbols"]))
            self.varint(depth, "i")
            self.emit(depth, f"if not 0 <= i < {len(node['symbols'])}:",
                      "    raise Unreadable(f'enum index {i} is out of range')",
                      f"{target} = {symbols}[i]")
        elif kind == "fixed":
            size = int(node["size"])
            self.emit(depth, f"q = p + {size}", "if q > size:",
                      f"    raise short({size}, size - p)", f"{target} = b64(data[p:q])",
                      "p = q")
        elif kind == "array":
            self._blocks(node["items"], None, target, depth, path, seen)
        elif kind == "map":
            self._blocks(node["values"], "string", target, depth, path, seen)
        elif isinstance(kind, str | list | dict):
            self.value(kind, target, depth, path, seen)
        else:
            raise Uncovered(f"the type {kind!r}")

    def _primitive(self, kind: str, target: str, depth: int) -> None:
        if kind == "null":
            self.emit(depth, f"{target} = None")
        elif kind == "boolean":
            self.emit(depth, "n = data[p]", "p += 1", "if n > 1:",
                      "    raise Unreadable(f'a boolean byte of {n}')",
                      f"{target} = n == 1")
        elif kind in ("int", "long"):
            self.varint(depth, target)
        elif kind in ("float", "double"):
            width, unpack = (4, "unpack_f") if kind == "float" else (8, "unpack_d")
            self.emit(depth, f"{target}, = {unpack}(data, p)", f"p += {width}")
        elif kind == "string":
            self.span(depth)
            self.emit(depth, f"{target} = data[p:q].decode()", "p = q")
        else:  # bytes: base64, as a JSON producer sends them
            self.span(depth)
            self.emit(depth, f"{target} = b64(data[p:q])", "p = q")

    def _underlying(self, node: dict[str, Any], depth: int) -> None:
        """Code that reads a logical value's plain value (an int, or the bytes) into x."""
        kind = node["type"]
        if kind in ("int", "long"):
            self.varint(depth, "x")
        elif kind == "bytes":
            self.span(depth)
            self.emit(depth, "x = data[p:q]", "p = q")
        else:  # fixed
            size = int(node["size"])
            self.emit(depth, f"q = p + {size}", "if q > size:",
                      f"    raise short({size}, size - p)", "x = data[p:q]", "p = q")

    def _record(self, node: dict[str, Any], target: str, depth: int, path: tuple[str, ...],
                seen: tuple[str, ...]) -> None:
        fields = []
        for field in node["fields"]:
            name = str(field["name"])
            var = self.fresh("f")
            self.value(field["type"], var, depth, (*path, name), seen)
            fields.append((name, var))
        self.emit(depth, f"{target} = {{" + ", ".join(
            f"{name!r}: {var}" for name, var in fields) + "}")

    def _blocks(self, item: Any, key: str | None, target: str, depth: int,
                path: tuple[str, ...], seen: tuple[str, ...]) -> None:
        # Avro writes a container as blocks: a count (negative: followed by the block's size
        # in bytes), its items, until a count of 0.
        count, one = self.fresh("count"), self.fresh("item")
        self.emit(depth, f"{target} = {{}}" if key else f"{target} = []", "while True:")
        self.varint(depth + 1, count)
        self.emit(depth + 1, f"if not {count}:", "    break", f"if {count} < 0:",
                  f"    {count} = -{count}")
        self.varint(depth + 2, "q")
        # Each item takes at least its least size (a map's key one byte): a count the bytes
        # left cannot hold is a corrupt value, not a reason to try. Items of no bytes at all
        # (nulls, empty records) draw on one allowance per record instead, or a few bytes
        # would make millions of them.
        least = self._least(item, ()) + (1 if key else 0)
        if least:
            self.emit(depth + 1, f"if {count} > (size - p) // {least}:",
                      f"    raise Unreadable(f'{{{count}}} items where at most "
                      f"{{(size - p) // {least}}} fit')")
        else:
            self.emit(depth + 1, f"spare -= {count}", "if spare < 0:",
                      f"    raise Unreadable('more than {_ZERO_SIZE_ITEMS} items of no bytes')")
        self.emit(depth + 1, f"for _ in range({count}):")
        if key:
            name = self.fresh("key")
            self._primitive("string", name, depth + 2)
            self.value(item, one, depth + 2, path, seen)
            self.emit(depth + 2, f"{target}[{name}] = {one}")
        else:
            self.value(item, one, depth + 2, path, seen)
            self.emit(depth + 2, f"{target}.append({one})")

    def _least(self, node: Any, seen: tuple[str, ...]) -> int:
        """The fewest bytes a value of ``node`` takes."""
        if isinstance(node, str) and node not in _PRIMITIVES:
            named = self.named.get(node)
            if named is None or named is _AMBIGUOUS or node in seen:
                return 0
            return self._least(named, (*seen, node))
        if isinstance(node, str | list):
            return _LEAST[node] if isinstance(node, str) else 1  # a union: its index
        kind = node.get("type")
        if kind in ("record", "error"):
            return sum(self._least(f["type"], seen) for f in node["fields"])
        if kind in ("fixed", "enum", "array", "map"):
            return int(node["size"]) if kind == "fixed" else 1
        return self._least(kind, seen)

    def _union(self, branches: list[Any], target: str, depth: int, path: tuple[str, ...],
               seen: tuple[str, ...]) -> None:
        index = self.fresh("branch")
        self.varint(depth, index)
        for i, branch in enumerate(branches):
            self.emit(depth, f"{'if' if i == 0 else 'elif'} {index} == {i}:")
            if branch == "null":
                self.emit(depth + 1, f"{target} = None")
            else:
                self.value(branch, target, depth + 1, path, seen)
        self.emit(depth, "else:",
                  f"    raise Unreadable(f'union index {{{index}}} is out of range')")


def compile_reader(schema: dict[str, Any]) -> Read | None:
    """The reader of records written with ``schema`` (a record schema's JSON), or None if the
    schema has a construct the generated code does not cover."""
    emitter = _Emitter(schema)
    try:
        emitter.value(schema, "record", 1, (), ())
    except (Uncovered, RecursionError):
        return None
    source = "\n".join([
        "def read(data, p):",
        "    size = len(data)",
        "    unfit = None",
        f"    spare = {_ZERO_SIZE_ITEMS}",
        *emitter.lines,
        "    if p != size:",
        "        raise Trailing(size - p)",
        "    if unfit is not None:",
        "        raise unfit",
        "    return record",
    ]) + "\n"
    try:
        code = compile(source, "<avro reader>", "exec")
    except (SyntaxError, RecursionError, MemoryError):  # nested past Python's own limits
        return None
    exec(code, emitter.namespace)  # noqa: S102 - our own code
    read: Read = emitter.namespace["read"]
    return read
