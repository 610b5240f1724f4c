"""Many Avro records of one writer schema at once: Arrow columns and each record's JSON.

The columnar path (:mod:`processor.decode.columnar`) can read a framed record as the JSON the
row path renders of it, but the per-record read and render cost more than the rest of the
path. For a writer schema of the kinds most topics use, this reads a batch of records
field by field over all of them at once, with numpy: a varint of every record in a few
array operations, a string of every record as one gather into an Arrow string array. It
gives the columns the contract's checks take (as Arrow's JSON reader would have read the
rendered JSON) and each record's JSON as the row path renders it (:func:`~..framed.render`:
the same keys and values, so the same ``raw`` in jsonb).

It is one-sided, like the columnar path: a record it cannot read exactly as the row path
does is *unsure*, and the row path reads it again: bytes that are not a record of the schema
(a length past the end, an index out of range, trailing bytes, a varint past 64 bits), text
that is not plain ASCII or needs an escape in JSON, a float whose shortest text has an
exponent or is not finite, a time outside the years 1 to 9999, a decimal past its
precision, more items than it reads in one go. A schema it does not cover raises
:class:`Unsupported` once, and its records take the per-record JSON view.

Covered: records of ``null``, ``boolean``, ``int``, ``long``, ``float``, ``double``,
``string``, enums, the logical types timestamp-millis/-micros (and their local forms), date
and decimal (bytes, up to 15 digits, read as the row path reads them: a float), a union of
``null`` and one of those, and arrays of those or of records of those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from processor.decode.formats.avro_values import (
    FLOAT_DIGITS,
    day_text,
    named_types,
    second_text,
)

_TEN = np.arange(10, dtype=np.int64)
_SHIFTS = (7 * _TEN).astype(np.uint64)
_PAD = 16  # zero bytes after the batch: a read past a record's end never leaves the buffer
# A byte that makes a string unsure: not ASCII, or one JSON must escape.
_UNSURE_BYTE = np.zeros(256, dtype=bool)
_UNSURE_BYTE[0x80:] = True
_UNSURE_BYTE[:0x20] = True
_UNSURE_BYTE[[ord('"'), ord("\\")]] = True
_MAX_ROUNDS = 64  # items read per record at most; more take the row path
# The instants of the years 1 to 9999 (the row path refuses the others), in seconds since
# 1970.
_FIRST_S, _END_S = -62135596800, 253402300800  # 0001-01-01, 10000-01-01
_UNIT = {"timestamp-millis": 1000, "timestamp-micros": 1_000_000,
         "local-timestamp-millis": 1000, "local-timestamp-micros": 1_000_000}


class Unsupported(Exception):
    """The writer schema has a construct this reader does not cover."""


@dataclass
class Batch:
    """The cursor of every record over one buffer of their payloads."""

    buf: np.ndarray  # uint8: the payloads one after another, then _PAD zeros
    pos: np.ndarray  # int64: where each record reads next
    end: np.ndarray  # int64: where each record ends
    unsure: np.ndarray  # bool: the row path must read it

    def varint(self, idx: np.ndarray) -> np.ndarray:
        """The next zig-zag varint of records ``idx``."""
        p = np.minimum(self.pos[idx], len(self.buf) - _PAD)
        first = self.buf[p]
        if not (first & 0x80).any():  # one byte each, the usual
            self.pos[idx] = p + 1
            raw = first.astype(np.int64)
            one: np.ndarray = (raw >> 1) ^ -(raw & 1)
            return one
        window = self.buf[p[:, None] + _TEN]
        more = window >= 0x80
        length = np.argmin(more, axis=1) + 1
        used = _TEN[None, :] < length[:, None]
        bits = np.where(used, (window & 0x7F).astype(np.uint64) << _SHIFTS, np.uint64(0))
        raw64 = np.bitwise_or.reduce(bits, axis=1)
        self.unsure[idx] |= more.all(axis=1) | ((length == 10) & (window[:, 9] > 1))
        self.pos[idx] = p + length
        many: np.ndarray = (raw64 >> np.uint64(1)).astype(np.int64) ^ -(
            raw64 & np.uint64(1)).astype(np.int64)
        return many

    def span(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A length, then its bytes' start, for records ``idx`` (an impossible length is 0
        and its record unsure)."""
        n = self.varint(idx)
        p = self.pos[idx]
        wrong = (n < 0) | (n > self.end[idx] - p)
        self.unsure[idx] |= wrong
        n = np.where(wrong, 0, n)
        self.pos[idx] = p + n
        return p, n

    def fixed(self, idx: np.ndarray, width: int) -> np.ndarray:
        """``width`` bytes of each of records ``idx``, as rows."""
        p = np.minimum(self.pos[idx], len(self.buf) - _PAD)
        self.pos[idx] = p + width
        rows: np.ndarray = self.buf[p[:, None] + np.arange(width)]
        return rows


@dataclass
class Column:
    """Values of records ``idx`` in order: for the checks, and as JSON text."""

    values: pa.Array
    json: pa.Array  # string, no nulls


Read = Callable[[Batch, np.ndarray], Column]


def _strings(batch: Batch, idx: np.ndarray) -> pa.Array:
    start, n = batch.span(idx)
    offsets = np.zeros(len(idx) + 1, dtype=np.int32)
    np.cumsum(n, out=offsets[1:])
    total = int(offsets[-1])
    data = batch.buf[np.repeat(start - offsets[:-1], n) + np.arange(total)]
    flagged = np.flatnonzero(_UNSURE_BYTE[data])
    if len(flagged):
        owners = np.searchsorted(offsets, flagged, side="right") - 1
        batch.unsure[idx[np.unique(owners)]] = True
        data = np.where(_UNSURE_BYTE[data], ord("?"), data).astype(np.uint8)
    return pa.Array.from_buffers(pa.string(), len(idx),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _string(batch: Batch, idx: np.ndarray) -> Column:
    text = _strings(batch, idx)
    return Column(text, _quoted(text))


def _long(batch: Batch, idx: np.ndarray) -> Column:
    values = pa.array(batch.varint(idx))
    return Column(values, pc.cast(values, pa.string()))


def _boolean(batch: Batch, idx: np.ndarray) -> Column:
    byte = batch.fixed(idx, 1)[:, 0]
    batch.unsure[idx] |= byte > 1
    values = pa.array(byte == 1)
    return Column(values, pc.if_else(values, "true", "false"))


def _float_json(values: np.ndarray, batch: Batch, idx: np.ndarray) -> Column:
    """A float's JSON as orjson writes it: its shortest text, a whole one with ``.0``; one
    whose text has an exponent (orjson and Arrow place it differently) or is not finite is
    unsure."""
    array = pa.array(values, pa.float64())
    text = pc.cast(array, pa.string())
    batch.unsure[idx] |= ~np.isfinite(values) | np.asarray(
        pc.match_substring_regex(text, "[eE]"), dtype=bool)
    whole = pa.array(np.isfinite(values) & (values == np.floor(values)))
    return Column(array, pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text))


def _double(batch: Batch, idx: np.ndarray) -> Column:
    return _float_json(batch.fixed(idx, 8).copy().view("<f8").ravel(), batch, idx)


def _float(batch: Batch, idx: np.ndarray) -> Column:
    return _float_json(batch.fixed(idx, 4).copy().view("<f4").ravel().astype(np.float64),
                       batch, idx)


def _enum(symbols: list[str]) -> Read:
    names, quoted = pa.array(symbols), pa.array([f'"{s}"' for s in symbols])

    def read(batch: Batch, idx: np.ndarray) -> Column:
        i = batch.varint(idx)
        wrong = (i < 0) | (i >= len(symbols))
        batch.unsure[idx] |= wrong
        at = pa.array(np.where(wrong, 0, i))
        return Column(names.take(at), quoted.take(at))
    return read


def _instant(per_second: int) -> Read:
    digits = len(str(per_second)) - 1

    def read(batch: Batch, idx: np.ndarray) -> Column:
        count = batch.varint(idx)
        seconds, fraction = np.divmod(count, per_second)
        wrong = (seconds < _FIRST_S) | (seconds >= _END_S)
        batch.unsure[idx] |= wrong
        whole = _texts(np.where(wrong, 0, seconds), second_text)
        part = pc.utf8_lpad(pc.cast(pa.array(fraction), pa.string()), digits, "0")
        text = pc.if_else(pa.array(fraction == 0),
                          pc.binary_join_element_wise(whole, "+00:00", ""),
                          pc.binary_join_element_wise(whole, ".", part, "+00:00", ""))
        return Column(text, _quoted(text))
    return read


def _date(batch: Batch, idx: np.ndarray) -> Column:
    days = batch.varint(idx)
    wrong = (days < _FIRST_S // 86400) | (days >= _END_S // 86400)
    batch.unsure[idx] |= wrong
    text = _texts(np.where(wrong, 0, days), day_text)
    return Column(text, _quoted(text))


def _texts(counts: np.ndarray, text: Callable[[int], str]) -> pa.Array:
    """Each count's text, made once per distinct count (a batch's events share a few
    seconds; Arrow's strftime cost 0.7 µs an event)."""
    distinct, inverse = np.unique(counts, return_inverse=True)
    return pa.array([text(c) for c in distinct.tolist()], pa.string()).take(
        pa.array(inverse.ravel()))



def _decimal(precision: int, scale: int) -> Read:
    bound, power = 10**precision, float(10**scale)

    def read(batch: Batch, idx: np.ndarray) -> Column:
        start, n = batch.span(idx)
        wide = n > 7  # 15 digits fit in 7 bytes; a longer encoding is unsure
        batch.unsure[idx] |= wide
        n = np.where(wide, 0, n)
        window = batch.buf[np.minimum(start, len(batch.buf) - _PAD)[:, None] + np.arange(7)]
        used = np.arange(7)[None, :] < n[:, None]
        shifts = (8 * (n[:, None] - 1 - np.arange(7)[None, :])).clip(0)
        unscaled = np.bitwise_or.reduce(
            np.where(used, window.astype(np.int64) << shifts, 0), axis=1)
        negative = (n > 0) & (window[:, 0] >= 0x80)
        unscaled = np.where(negative, unscaled - (np.int64(1) << (8 * n).clip(0, 62)),
                            unscaled)
        batch.unsure[idx] |= (unscaled <= -bound) | (unscaled >= bound)
        return _float_json(unscaled / power, batch, idx)
    return read


class _Compiler:
    """A writer schema's reader, checked against the contract's read types."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.named, shared = named_types(schema)
        if shared:
            raise Unsupported("a short name two namespaces share")

    def field(self, node: Any, want: pa.DataType, name: str) -> tuple[Read, bool]:
        """The reader of one field (and whether it may be null), whose values must be what
        Arrow's JSON reader makes of its JSON as ``want``."""
        if isinstance(node, list):
            branches = [b for b in node if b != "null"]
            if len(node) != 2 or len(branches) != 1:
                raise Unsupported(f"{name}: a union other than null and one type")
            inner, _ = self.field(branches[0], want, name)
            return _nullable(inner, node.index("null"), want), True
        if isinstance(node, str) and node in self.named:
            node = self.named[node]
        read, natural = self._plain(node, want, name)
        if natural != want:
            if not (natural == pa.int64() and want == pa.float64()):
                raise Unsupported(f"{name}: {natural} where the contract reads {want}")
            base = read
            read = lambda b, i: _as_float(base(b, i))  # noqa: E731 - an integer read as a number
        return read, False

    def _plain(self, node: Any, want: pa.DataType, name: str  # noqa: PLR0911 - one per kind
               ) -> tuple[Read, pa.DataType]:
        kind = node if isinstance(node, str) else node.get("type")
        logical = None if isinstance(node, str) else node.get("logicalType")
        if logical in _UNIT and kind == "long":
            return _instant(_UNIT[logical]), pa.string()
        if logical == "date" and kind == "int":
            return _date, pa.string()
        if logical == "decimal" and kind == "bytes":
            precision, scale = int(node["precision"]), int(node.get("scale", 0))
            if precision > FLOAT_DIGITS or scale > 22:
                raise Unsupported(f"{name}: a decimal of more than {FLOAT_DIGITS} digits")
            return _decimal(precision, scale), pa.float64()
        if logical is not None and logical != "uuid":
            raise Unsupported(f"{name}: logical type {logical}")
        simple = {"string": (_string, pa.string()), "long": (_long, pa.int64()),
                  "int": (_long, pa.int64()), "boolean": (_boolean, pa.bool_()),
                  "double": (_double, pa.float64()), "float": (_float, pa.float64())}
        if kind in simple:
            return simple[kind]
        if kind == "enum":
            return _enum([str(s) for s in node["symbols"]]), pa.string()
        if kind == "array" and pa.types.is_list(want):
            return self._array(node["items"], want, name)
        if kind in ("record", "error") and pa.types.is_struct(want):
            return self.record(node, want, name), want
        if isinstance(kind, dict | list) or (isinstance(kind, str) and kind in self.named):
            return self._plain(self.named.get(kind, kind) if isinstance(kind, str) else kind,
                               want, name)
        raise Unsupported(f"{name}: type {kind!r} as {want}")

    def record(self, node: Mapping[str, Any], want: pa.StructType, name: str
               ) -> Callable[[Batch, np.ndarray], Column]:
        """A record's reader: each field in the writer's order, the contract's struct."""
        if not node["fields"]:
            raise Unsupported(f"{name}: a record without fields")  # no column to count rows
        wanted = {want.field(i).name: want.field(i).type for i in range(want.num_fields)}
        fields: list[tuple[str, Read]] = []
        for field in node["fields"]:
            key = str(field["name"])
            if key not in wanted:
                raise Unsupported(f"{name}.{key}: a field the contract does not name")
            fields.append((key, self.field(field["type"], wanted[key], f"{name}.{key}")[0]))
        return _record(fields, want)

    def _array(self, items: Any, want: pa.ListType, name: str) -> tuple[Read, pa.DataType]:
        item, nullable = self.field(items, want.value_type, f"{name}[]")
        if nullable:
            raise Unsupported(f"{name}: items that may be null")
        return _array(item, want), want


def _as_float(column: Column) -> Column:
    return Column(pc.cast(column.values, pa.float64()), column.json)


def _nullable(inner: Read, null_at: int, want: pa.DataType) -> Read:
    def read(batch: Batch, idx: np.ndarray) -> Column:
        branch = batch.varint(idx)
        batch.unsure[idx] |= (branch < 0) | (branch > 1)
        present = branch == 1 - null_at
        some = idx[present]
        got = inner(batch, some)
        # Every record's place: its value's, or the null after them.
        where = np.full(len(idx), len(some), dtype=np.int64)
        where[present] = np.arange(len(some))
        at = pa.array(where)
        values = pa.concat_arrays([got.values.cast(want), pa.nulls(1, want)]).take(at)
        json = pa.concat_arrays([got.json, pa.array(["null"])]).take(at)
        return Column(values, json)
    return read


def _record(fields: list[tuple[str, Read]], want: pa.StructType) -> Read:
    keys = [f'"{key}":' for key, _ in fields]

    def read(batch: Batch, idx: np.ndarray) -> Column:
        columns = {key: r(batch, idx) for key, r in fields}
        arrays = [columns[want.field(i).name].values if want.field(i).name in columns else
                  pa.nulls(len(idx), want.field(i).type) for i in range(want.num_fields)]
        values = pa.StructArray.from_arrays(arrays, fields=list(want))
        pieces: list[Any] = []
        for (key, _), prefix in zip(fields, keys, strict=True):
            pieces += [("{" if not pieces else ",") + prefix, columns[key].json]
        return Column(values, pc.binary_join_element_wise(*pieces, "}", ""))
    return read


def _array(item: Read, want: pa.ListType) -> Read:
    def read(batch: Batch, idx: np.ndarray) -> Column:
        left = np.zeros(len(idx), dtype=np.int64)
        active = np.arange(len(idx))
        owners, parts = [], []
        for _ in range(_MAX_ROUNDS):
            need = active[left[active] == 0]
            if len(need):
                count = batch.varint(idx[need])
                batch.unsure[idx[need]] |= count == np.iinfo(np.int64).min  # no abs
                sized = count < 0
                if sized.any():
                    batch.varint(idx[need[sized]])  # a block's size in bytes: not needed
                left[need] = np.abs(count)
                active = active[left[active] > 0]
            if not len(active):
                break
            owners.append(active)
            parts.append(item(batch, idx[active]))
            left[active] -= 1
            # Each item takes a byte at least: no record may count more than it has left.
            overrun = batch.pos[idx[active]] > batch.end[idx[active]]
            if overrun.any():
                batch.unsure[idx[active[overrun]]] = True
                left[active[overrun]] = 0
        else:
            batch.unsure[idx[active]] = True
        if not parts:
            empty = pa.array([[]] * len(idx), want)
            return Column(empty, pa.array(["[]"] * len(idx), pa.string()))
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")
        values = pa.concat_arrays([p.values for p in parts]).take(pa.array(order))
        texts = pa.concat_arrays([p.json for p in parts]).take(pa.array(order))
        offsets = np.zeros(len(idx) + 1, dtype=np.int32)
        np.cumsum(np.bincount(owner, minlength=len(idx)), out=offsets[1:])
        lists = pa.ListArray.from_arrays(pa.array(offsets), values.cast(want.value_type))
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), texts), ",")
        return Column(lists, pc.binary_join_element_wise("[", joined, "]", ""))
    return read


class AvroColumns:
    """The batch reader of one writer schema, for a contract read as ``read``."""

    def __init__(self, writer: Mapping[str, Any], read: pa.Schema) -> None:
        if writer.get("type") not in ("record", "error"):
            raise Unsupported("the writer's schema is not a record")
        want = pa.struct(list(read))
        self._read = _Compiler(writer).record(writer, want, "(event)")
        self._schema = read

    def read(self, payloads: list[bytes]) -> tuple[pa.Table, pa.Array, np.ndarray]:
        """The records' columns (the contract's read schema), each record's JSON, and which
        records are unsure (the row path reads those)."""
        sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        end = np.cumsum(sizes)
        buf = np.frombuffer(b"".join(payloads) + bytes(_PAD), dtype=np.uint8)
        batch = Batch(buf, end - sizes, end, np.zeros(len(payloads), dtype=bool))
        column = self._read(batch, np.arange(len(payloads)))
        batch.unsure |= batch.pos != batch.end
        struct = column.values
        table = pa.Table.from_arrays([struct.field(i) for i in range(struct.type.num_fields)],
                                     schema=self._schema)
        return table, column.json, batch.unsure
