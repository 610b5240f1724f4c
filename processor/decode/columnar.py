"""The columnar path: a topic's share of a fetch decoded together, in C++ and Rust.

The row path (:mod:`processor.decode.decoder`) spends most of an event's CPU in per-field
Python. For an event type whose contract and table allow it, this path takes a fetch's
records of one topic at once (of every partition in it): their values joined, read by
Arrow's JSON reader with the contract as an explicit schema, checked by Arrow kernels over
whole columns, transformed by the transforms' Arrow forms, and laid out as the table's
columnar stage
(:meth:`~processor.schema.tables.TableSpec.columnar_columns`), which pgpq writes in
PostgreSQL's binary COPY format (:mod:`processor.sink.columnar_copy`). Numerics and jsonb
sub-documents are read by PostgreSQL itself out of ``raw``.

Like the msgspec check (:mod:`processor.decode.fastcheck`), it is one-sided: a record it
is not sure of takes the row path, which accepts, rejects with the usual reason and
message, or drops it, exactly as it always did. So nothing it writes differs from what the
row path writes, and every rejection is still the row path's. A record takes the row path
when it has no value, is over a size bound, does not start with ``{``, holds a line break,
a backslash (an escape: ``\\u0000`` among them), bytes that are not UTF-8 (or, unless
every transform's Arrow form takes any text, any byte over 127), a control character, a
number whose literal is not its float's shortest form (an exponent, a fraction ending in
0, 16 digits or more: PostgreSQL would read the literal, the row path the float),
``NaN``/``Infinity``, or a ``null`` for a field whose schema refuses null; or when any
check is not surely passed, or a transform's Arrow form is not sure. A batch that Arrow
cannot read whole (a field the contract does not name, a value of another type, a
duplicate key) takes the row path whole.

An event type takes this path when its table is an insert table (no child table or
envelope), its topics are of that one type, every transform has an Arrow form
(:mod:`processor.transform.columnar`), every mapped column is of a kind
:mod:`processor.decode.columnar_mapped` compiles, and its schema uses only what is compiled
here: objects with ``properties`` and ``required``, strings (lengths, ``enum``,
``pattern``, ``format`` date-time and uuid), integers and numbers (bounds), booleans,
arrays (``items``, lengths), each alone or with ``null``. Otherwise it stays on the row
path, and :func:`compile_plan` says why.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from fastjsonschema.draft07 import CodeGeneratorDraft07

from processor.contracts import Contract
from processor.core.pgtime import FIRST_US, LAST_US, PG_EPOCH_US, UTC_MILLIS
from processor.core.records import Header
from processor.core.row_layout import META_NAMES
from processor.core.settings import Settings
from processor.decode.columnar_mapped import FromRecords, NotCompiled, mapped_column, types_of
from processor.decode.quickcheck import ANNOTATIONS
from processor.schema.tables import TableSpec

if TYPE_CHECKING:  # the wiring resolves the transforms' forms: no stage imports a later one
    from processor.transform.columnar import ArrowForm

UTC = pa.timestamp("us", tz="UTC")
# A fetch with fewer records of a topic than this takes the row path: a call costs about
# 2 ms whatever its size, a record a few µs (the row path about 8), so it pays from a few
# hundred records on. Also the smallest part an unreadable batch is halved down to.
MIN_RECORDS = 512
BISECT_FLOOR = 16

# The row path's own date-time check (fastjsonschema's regex, ``\Z`` being RE2's ``$``),
# and the canonical form Arrow's cast and Python's fromisoformat read alike.
DATE_TIME = CodeGeneratorDraft07.FORMAT_REGEXS["date-time"].replace(r"\Z", "$")
CANONICAL_TIME = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9]"
                  r"(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$")
CANONICAL_UUID = (r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                  r"[0-9a-fA-F]{12}$")
# In a value position (after a key's ":", or in an array): a number whose literal
# PostgreSQL and the row path would read differently, or that the row path refuses. Run by
# RE2 (linear time, whatever the alternatives), with the fields whose null is not valid.
_VALUE_AT = r'(?:"[ \t\r\n]*:|[\[,])[ \t\r\n]*'
_EXPONENT, _TRAILING_ZERO = r'[0-9]+(?:\.[0-9]+)?[eE]', r'[0-9]+\.[0-9]*[0-9]0(?:[^0-9]|$)'
ODD_NUMBER = (_VALUE_AT + rf'(?:-?(?:{_EXPONENT}|{_TRAILING_ZERO}|[0-9.]{{16}}|Infinity)|NaN)')
# A framed record's JSON is rendered by the row path's own renderer: a float as its shortest
# form, a decimal as its exact digits, which the row path writes as they are; so a fraction
# ending in 0 ("12.50", a decimal(12, 2)) is read alike by PostgreSQL and the row path.
ODD_FRAMED_NUMBER = _VALUE_AT + rf'(?:-?(?:{_EXPONENT}|[0-9.]{{16}}|Infinity)|NaN)'
CONTROL = bytes(range(0x20)).replace(b"\n", b"")

HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    HEX[_c] = 10 + _i
UUID_HEX_AT = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])

_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern", "format", "enum"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "boolean": set(), "array": {"items", "minItems", "maxItems"},
    "object": {"properties", "required"},
}
_ARROW = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(),
          "boolean": pa.bool_()}
_BOUNDS = {"minimum": pc.less, "maximum": pc.greater,
           "exclusiveMinimum": pc.less_equal, "exclusiveMaximum": pc.greater_equal}
# Column types this path stages itself (numerics and jsonb come from raw).
STAGED_TYPES = {"text", "bigint", "boolean", "timestamptz", "uuid", "text[]"}


class Unsupported(Exception):
    """The event type cannot take the columnar path; the message says why."""


Fail = Callable[[pa.Table], list[pa.Array]]  # record indices that fail (or are not sure)


@dataclass
class _Compiled:
    """What compiling a schema gives: Arrow's read type, and the checks."""

    arrow: pa.DataType
    nullable: bool
    checks: list[Callable[[Any, Any], Any]] = field(default_factory=list)


class _Compiler:
    """A JSON Schema (the subset above) as Arrow's read schema and per-record checks."""

    def __init__(self, settings: Settings) -> None:
        self.limits = settings.pipeline
        self.null_keys: set[str] = set()  # a JSON null here is not valid: guard it
        self.inexact: list[str] = []  # numbers with a bound a decimal's float may cross
        self.patterns: list[re.Pattern[str]] = []

    def value(self, schema: Any, depth: int, name: str) -> _Compiled:
        """The read type of one value and its checks, each ``check(values, present) ->
        failing mask`` over the values of this level (``present``: the value is there and
        not null)."""
        if not isinstance(schema, Mapping):
            raise Unsupported(f"{name}: a schema that is not an object")
        kinds = schema.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        concrete = [k for k in kinds if k != "null"]
        if len(concrete) != 1 or concrete[0] not in _KEYWORDS:
            raise Unsupported(f"{name}: type {schema.get('type')!r}")
        kind = concrete[0]
        unknown = {k for k in schema if k not in ANNOTATIONS and not k.startswith("x-")
                   and k != "type"} - _KEYWORDS[kind]
        if unknown:
            raise Unsupported(f"{name}: {', '.join(sorted(unknown))}")
        nullable = "null" in kinds
        if "enum" in schema and None not in schema["enum"]:
            nullable = False
        if not nullable:
            self.null_keys.add(name)
        if depth > self.limits.max_json_depth:
            raise Unsupported(f"{name}: nested deeper than pipeline.max_json_depth")
        compiled: _Compiled = getattr(self, f"_{kind}")(schema, depth, name)
        compiled.nullable = nullable
        return compiled

    def _string(self, s: Mapping[str, Any], depth: int, name: str) -> _Compiled:
        c = _Compiled(pa.string(), True)
        if "minLength" in s:
            c.checks.append(_length(pc.less, s["minLength"]))
        if "maxLength" in s:
            c.checks.append(_length(pc.greater, s["maxLength"]))
        if "enum" in s:
            allowed = [x for x in s["enum"] if x is not None]
            if not all(isinstance(x, str) for x in allowed):
                raise Unsupported(f"{name}: an enum of other than strings")
            values = pa.array(allowed, pa.string())
            c.checks.append(lambda v, p: pc.and_(p, pc.invert(pc.is_in(v, values))))
        if "pattern" in s:
            # fastjsonschema's own regex, run by Python on the batch's distinct values: the
            # row path's verdict exactly, at a cost per distinct value, not per record.
            regex = re.compile(re.sub(r"(?<!\\)\$", r"\\Z", str(s["pattern"])))
            c.checks.append(lambda v, p: pc.and_(p, pc.invert(_matching(v, regex))))
        fmt = s.get("format")
        if fmt == "date-time":
            c.checks.append(lambda v, p: pc.and_(p, pc.invert(pc.and_(
                pc.match_substring_regex(v, DATE_TIME),
                pc.match_substring_regex(v, CANONICAL_TIME)))))
        elif fmt is not None and fmt != "uuid":
            raise Unsupported(f"{name}: format {fmt!r}")
        return c

    def _integer(self, s: Mapping[str, Any], depth: int, name: str) -> _Compiled:
        c = _Compiled(pa.int64(), True)
        self._bounds(s, c)
        if "enum" in s:
            raise Unsupported(f"{name}: an integer enum")
        return c

    def _number(self, s: Mapping[str, Any], depth: int, name: str) -> _Compiled:
        c = _Compiled(pa.float64(), True)
        self._bounds(s, c)
        if any(k in s and not _whole(s[k]) for k in _BOUNDS):
            # A decimal (Avro's) is compared exactly by the row path and as its nearest
            # float here: alike against a whole bound, maybe not against 0.1.
            self.inexact.append(name)
        return c

    @staticmethod
    def _bounds(s: Mapping[str, Any], c: _Compiled) -> None:
        for keyword, outside in _BOUNDS.items():
            if keyword in s:
                bound = s[keyword]
                if isinstance(bound, bool) or not isinstance(bound, int | float):
                    raise Unsupported(f"{keyword} {bound!r}")
                c.checks.append(_outside(outside, bound))

    def _boolean(self, s: Mapping[str, Any], depth: int, name: str) -> _Compiled:
        return _Compiled(pa.bool_(), True)

    def _array(self, s: Mapping[str, Any], depth: int, name: str) -> _Compiled:
        if "items" not in s:
            raise Unsupported(f"{name}: an array without items")
        item = self.value(s["items"], depth + 1, f"{name}[]")
        c = _Compiled(pa.list_(pa.field("item", item.arrow)), True)
        low = s.get("minItems", 0)
        high = min(s.get("maxItems", self.limits.max_array_length),
                   self.limits.max_array_length)
        c.checks.append(lambda v, p: pc.or_(pc.less(pc.list_value_length(v), low),
                                            pc.greater(pc.list_value_length(v), high)))
        c.checks.append(_each_item(item))
        return c

    def _object(self, s: Mapping[str, Any], depth: int, name: str) -> _Compiled:
        props = s.get("properties")
        if not isinstance(props, Mapping) or not props:
            raise Unsupported(f"{name}: an object without properties")
        if len(props) > self.limits.max_object_fields:
            raise Unsupported(f"{name}: more properties than pipeline.max_object_fields")
        required = set(s.get("required", []))
        fields = {key: self.value(sub, depth + 1, key) for key, sub in props.items()}
        for key in required:
            if key not in fields:
                raise Unsupported(f"{name}: required {key!r} is not a property")
            if fields[key].nullable:
                # Arrow reads an absent field and a JSON null alike; here only one is valid.
                raise Unsupported(f"{name}: required {key!r} may be null")
        c = _Compiled(pa.struct([pa.field(k, f.arrow) for k, f in fields.items()]), True)
        c.checks.append(lambda v, p: _fields_fail(v, p, fields, required))
        return c


def _length(compare: Callable[[Any, Any], Any], bound: int) -> Callable[[Any, Any], Any]:
    return lambda values, present: compare(pc.utf8_length(values), bound)


def _outside(compare: Callable[[Any, Any], Any], bound: float
             ) -> Callable[[Any, Any], Any]:
    return lambda values, present: compare(values, bound)


def _each_item(item: _Compiled) -> Callable[[Any, Any], Any]:
    return lambda values, present: _items_fail(values, item)


def _not_canonical_uuid(name: str) -> Callable[[pa.Table], Any]:
    return lambda table: pc.invert(pc.match_substring_regex(table[name], CANONICAL_UUID))


def _fails(values: Any, present: Any, compiled: _Compiled) -> Any:
    """Where ``values`` (of one level) fail ``compiled``'s checks: a mask, no nulls."""
    out = None
    for check in compiled.checks:
        mask = pc.fill_null(check(values, present), False)
        out = mask if out is None else pc.or_(out, mask)
    return out if out is not None else pc.and_(present, False)


def _fields_fail(struct: Any, present: Any, fields: Mapping[str, _Compiled],
                 required: set[str]) -> Any:
    out = pc.and_(present, False)
    for key, compiled in fields.items():
        values = pc.struct_field(struct, key)
        here = pc.and_(present, pc.is_valid(values))
        if key in required:
            out = pc.or_(out, pc.and_(present, pc.invert(pc.is_valid(values))))
        out = pc.or_(out, pc.and_(here, _fails(values, here, compiled)))
    return out


def _items_fail(lists: Any, item: _Compiled) -> Any:
    """The lists with an item that fails (a null item when null is not an item's)."""
    flat = pc.list_flatten(lists)
    present = pc.is_valid(flat)
    bad = _fails(flat, present, item)
    if not item.nullable:
        bad = pc.or_(bad, pc.invert(present))
    parents = pc.list_parent_indices(lists).filter(bad)
    return pc.is_in(pa.array(np.arange(len(lists))), parents)


def _matching(values: Any, regex: re.Pattern[str]) -> Any:
    """Whether each value matches ``regex`` as Python searches it (null stays null)."""
    distinct = pc.unique(values).drop_null().to_pylist()
    passing = pa.array([v for v in distinct if regex.search(v)], pa.string())
    return pc.is_in(values, passing)


@dataclass(frozen=True)
class Decoded:
    """What the columnar path made of a fetch's records of one topic."""

    columns: pa.Table | None  # the accepted records' rows, in the columnar stage's layout
    taken: list[int]  # the indices of those records (their order)
    fallback: list[int]  # the indices of the records for the row path, in order
    dropped: list[int]  # the indices of the records a transform dropped
    reasons: Counter[str]  # why records took the row path


@dataclass(frozen=True)
class Where:
    """Where each record of a batch came from; its key and headers, for the mapped columns
    that read them."""

    topic: str
    offsets: Sequence[int]
    timestamps: Sequence[int]
    partitions: Sequence[int]
    keys: Sequence[bytes | None] = ()
    headers: Sequence[Sequence[Header]] = ()


@dataclass
class ColumnarPlan:
    """One event type's columnar path, compiled at start."""

    event_type: str
    read: pa.Schema
    top: _Compiled
    checks: list[Callable[[pa.Table], Any]]  # beyond the schema's: each a failing mask
    times: list[str]  # the date-time columns, cast (and bounded) once
    staged: pa.Schema
    build: list[Callable[[pa.Table, Mapping[str, Any]], Any]]
    forms: list[ArrowForm]
    suspect: str  # RE2: an odd number, or a null where its field may not be null
    rendered_suspect: str  # the same for the JSON the row path renders of a framed record
    time_field: str | None
    max_bytes: int
    inexact: list[str]  # number fields whose bounds keep decoded decimals off this path
    # The mapped columns' checks over the transformed rows: where the row path must decide.
    fits: list[Callable[[pa.Table], Any]] = field(default_factory=list)
    # The mapped columns made of the records' keys or headers, by name.
    from_records: list[tuple[str, FromRecords]] = field(default_factory=list)
    # Text beyond ASCII is taken (every transform's Arrow form agrees on any text).
    unicode: bool = False

    @property
    def reads_records(self) -> bool:
        """Whether a mapped column reads the records' keys or headers (pass them)."""
        return bool(self.from_records)

    def decode(self, values: Sequence[bytes | None], offsets: Sequence[int],
               timestamps: Sequence[int], topic: str, partitions: Sequence[int],
               rendered: bool = False, keys: Sequence[bytes | None] = (),
               headers: Sequence[Sequence[Header]] = ()) -> Decoded:
        """Decode ``values`` (each partition's in offset order, ``partitions`` each one's)
        as far as this path can. Its cost is about 2 ms a call, then a few µs a record:
        it pays from a few hundred records on (:data:`MIN_RECORDS`). ``rendered``: the
        values are the JSON the row path renders of framed records (Avro, Protobuf).
        ``keys`` and ``headers``: the records', when :attr:`from_records` reads them."""
        where = Where(topic, offsets, timestamps, partitions, keys, headers)
        reasons: Counter[str] = Counter()
        n = len(values)
        every = list(range(n))
        raw = pa.array(values, pa.binary())
        odd = set(np.flatnonzero(np.asarray(pc.fill_null(pc.or_(
            pc.greater(pc.binary_length(raw), self.max_bytes),
            pc.invert(pc.starts_with(raw, "{"))), True))).tolist())
        good = [i for i in every if i not in odd] if odd else every
        joined = b"\n".join([values[i] for i in good])  # type: ignore[misc]
        if not _plain(joined, len(good), self.unicode):
            odd |= {i for i in good
                    if not _plain(values[i], 1, self.unicode)}  # type: ignore[arg-type]
            good = [i for i in every if i not in odd]
            joined = b"\n".join([values[i] for i in good])  # type: ignore[misc]
        suspects = np.flatnonzero(np.asarray(pc.fill_null(
            pc.match_substring_regex(raw, self.rendered_suspect if rendered else self.suspect),
            False))).tolist()
        if suspects:
            odd |= set(suspects)
            good = [i for i in every if i not in odd]
            joined = b"\n".join([values[i] for i in good])  # type: ignore[misc]
        reasons["odd bytes"] += len(odd)
        parts = self._read(values, good, joined, raw, where, reasons)
        tables = [part.columns for part in parts if part.columns is not None]
        return Decoded(
            pa.concat_tables(tables) if len(tables) > 1 else (tables[0] if tables else None),
            [i for part in parts for i in part.taken],
            sorted(odd.union(*(part.fallback for part in parts))),
            [i for part in parts for i in part.dropped], reasons)

    def decode_read(self, table: pa.Table, raw: pa.Array, unsure: np.ndarray,
                    offsets: Sequence[int], timestamps: Sequence[int], topic: str,
                    partitions: Sequence[int], keys: Sequence[bytes | None] = (),
                    headers: Sequence[Sequence[Header]] = ()) -> Decoded:
        """:meth:`decode` for records a format's own reader has read already
        (:mod:`processor.decode.formats.avro_columns`): ``table`` in :attr:`read`'s
        schema, ``raw`` their JSON as the row path renders it, ``unsure`` those the row
        path must read. The rendered JSON passes the same guards as any."""
        unsure = unsure | np.asarray(pc.fill_null(pc.or_(
            pc.greater(pc.binary_length(raw), self.max_bytes),
            pc.match_substring_regex(raw, self.rendered_suspect)), True))
        reasons: Counter[str] = Counter()
        reasons["odd bytes"] += int(unsure.sum())
        good = np.flatnonzero(~unsure).tolist()
        fallback = np.flatnonzero(unsure).tolist()
        if not good:
            return Decoded(None, [], fallback, [], reasons)
        if fallback:
            table = table.filter(pa.array(~unsure))
        done = self._checked(table, good, raw,
                             Where(topic, offsets, timestamps, partitions, keys, headers),
                             reasons)
        return Decoded(done.columns, done.taken, sorted(fallback + done.fallback),
                       done.dropped, reasons)

    def _read(self, values: Sequence[bytes | None], good: list[int], joined: bytes,
              raw: pa.Array, where: Where, reasons: Counter[str]) -> list[Decoded]:
        """``good`` read and checked; a part Arrow cannot read is halved, down to
        :data:`BISECT_FLOOR`, so that one such record costs a few reads, not its batch."""
        if not good:
            return []
        try:
            table = pj.read_json(
                io.BytesIO(joined),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(joined) + 1),
                parse_options=pj.ParseOptions(explicit_schema=self.read,
                                              unexpected_field_behavior="error"))
            if table.num_rows == len(good):  # else boundaries not as the guards promised
                return [self._checked(table, good, raw, where, reasons)]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # A field the contract does not name, a value of another type, a duplicate
            # key, a cast refused: somewhere in this part.
            pass
        if len(good) <= BISECT_FLOOR:
            reasons["unreadable batch"] += len(good)
            return [Decoded(None, [], good, [], Counter())]
        half = len(good) // 2
        return [part for piece in (good[:half], good[half:])
                for part in self._read(values, piece,
                                       b"\n".join([values[i] for i in piece]),  # type: ignore[misc]
                                       raw, where, reasons)]

    def _checked(self, table: pa.Table, good: list[int], raw: pa.Array, where: Where,
                 reasons: Counter[str]) -> Decoded:
        """The read records checked, transformed and laid out as the columnar stage."""
        table = table.combine_chunks()
        events = pa.StructArray.from_arrays(
            [table.column(i).chunk(0) if table.column(i).num_chunks else
             pa.array([], table.schema.field(i).type) for i in range(table.num_columns)],
            fields=list(table.schema))
        count = len(good)
        every = count == len(where.timestamps)  # good is a sorted subset of the indices

        def pick(seq: Sequence[Any]) -> Sequence[Any]:
            return seq if every else [seq[i] for i in good]
        ts = pa.array(pick(where.timestamps), pa.int64())
        fails = _fails(events, pa.array(np.ones(count, dtype=bool)), self.top)
        for check in self.checks:
            fails = pc.or_(fails, pc.fill_null(check(table), False))
        ok = pc.and_(pc.invert(fails), pc.and_(pc.greater_equal(ts, UTC_MILLIS[0]),
                                               pc.less_equal(ts, UTC_MILLIS[1])))
        table, keep, unsure = self._transform(table)
        cast: dict[str, Any] = {}
        for name in self.times:
            # Only the records still in are cast (one bad value fails a whole cast).
            present = pc.and_(ok, pc.is_valid(table[name]))
            times = pc.cast(pc.if_else(present, table[name], "2000-01-01T00:00:00Z"), UTC)
            micros = pc.subtract(pc.cast(times, pa.int64()), PG_EPOCH_US)
            ok = pc.and_(ok, pc.invert(pc.and_(present, pc.or_(
                pc.less(micros, FIRST_US), pc.greater(micros, LAST_US)))))
            cast[name] = pc.if_else(present, times, pa.scalar(None, UTC))
        for fit in self.fits:
            ok = pc.and_(ok, pc.invert(pc.fill_null(fit(table), False)))
        made: dict[str, Any] = {}
        for name, from_records in self.from_records:
            made[name], refused = from_records(pick(where.keys), pick(where.headers))
            ok = pc.and_(ok, pa.array(~refused))
        sure = np.asarray(ok)
        reasons["not surely valid"] += count - int(sure.sum())
        kept = np.asarray(keep)
        if unsure is not None:
            doubt = np.asarray(unsure) & sure
            reasons["transform not sure"] += int(doubt.sum())
            sure = sure & ~doubt
        take = sure & kept
        dropped = [good[i] for i in np.flatnonzero(sure & ~kept).tolist()]
        fallback = [good[i] for i in np.flatnonzero(~sure).tolist()]
        taken = [good[i] for i in np.flatnonzero(take).tolist()]
        if not taken:
            return Decoded(None, [], fallback, dropped, reasons)
        mask = pa.array(take)
        rows = table.filter(mask)
        chosen = {name: column.filter(mask) for name, column in (cast | made).items()}
        kafka = _kafka_time(ts.filter(mask))
        meta = {
            "event_time": chosen[self.time_field] if self.time_field is not None else kafka,
            "kafka_topic": pa.array([where.topic] * len(taken), pa.string()),
            "kafka_partition": pa.array([where.partitions[i] for i in taken], pa.int32()),
            "kafka_offset": pa.array([where.offsets[i] for i in taken], pa.int64()),
            "kafka_timestamp": kafka,
            "raw": raw.take(pa.array(taken)).cast(pa.string()),
        }
        columns = [build(rows, chosen) for build in self.build] + [meta[m] for m in META_NAMES]
        staged = pa.Table.from_arrays(columns, schema=self.staged)
        return Decoded(staged, taken, fallback, dropped, reasons)

    def _transform(self, table: pa.Table) -> tuple[pa.Table, Any, Any]:
        """The transforms' Arrow forms in order: the table, which records are kept, and
        which the forms are not sure of (None: none)."""
        keep = pa.array(np.ones(table.num_rows, dtype=bool))
        unsure = None
        for form in self.forms:
            result = form(table)
            table = result.table
            if result.keep is not None:
                keep = pc.and_(keep, pc.fill_null(result.keep, True))
            if result.unsure is not None:
                doubt = pc.fill_null(result.unsure, True)
                unsure = doubt if unsure is None else pc.or_(unsure, doubt)
        return table, keep, unsure


def _whole(bound: Any) -> bool:
    """A bound that a decimal and its nearest float meet alike (a whole number a float
    holds exactly; decimals of up to 15 digits do not round across it)."""
    return isinstance(bound, int | float) and float(bound).is_integer() and abs(bound) < 2**53


def _plain(data: bytes, records: int, unicode: bool) -> bool:
    """No record boundary inside a value, no escape, no control character; only ASCII,
    or (``unicode``) any valid UTF-8, which Arrow's reader would let through unchecked."""
    if data.count(b"\n") != records - 1 or b"\\" in data \
            or len(data.translate(None, CONTROL)) != len(data):
        return False
    if data.isascii():
        return True
    return unicode and _utf8(data)


def _utf8(data: bytes) -> bool:
    """Whether ``data`` is well-formed UTF-8 (RFC 3629: no surrogates, no overlong forms,
    nothing past U+10FFFF), as strictly as orjson and Python's decoder, checked by Arrow's
    validator: it builds no string (Python's decoder, for text beyond ASCII, a wide one)."""
    one = pa.StringArray.from_buffers(
        1, pa.py_buffer(np.array([0, len(data)], dtype=np.int32)), pa.py_buffer(data))
    try:
        one.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _kafka_time(ms: Any) -> Any:
    return pc.cast(pc.multiply(ms, 1000), UTC)


def uuid_bytes(text: Any) -> pa.Array:
    """Canonical uuid strings (checked before) as their 16 bytes, with no call per value."""
    chunk = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[
        chunk.offset:chunk.offset + len(chunk) + 1]
    data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)
    starts = offsets[:-1]
    rows = data[starts[:, None] + UUID_HEX_AT[None, :]]
    nibbles = HEX[rows]
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(chunk),
                                                [None, pa.py_buffer(packed.tobytes())])


def compile_plan(contract: Contract, spec: TableSpec,
                 transforms: Sequence[tuple[str, ArrowForm | None]],
                 settings: Settings, unicode: bool = False) -> ColumnarPlan:
    """The event type's columnar path; raises :class:`Unsupported` saying why not.

    ``transforms``: each configured transform's name and Arrow form (None: it has none).
    ``unicode``: every form agrees with its transform on any text, so events beyond ASCII
    may take the path too."""
    if not settings.pipeline.columnar:
        raise Unsupported("pipeline.columnar is off")
    if not spec.columnar:
        raise Unsupported("its table is not an insert table without child tables")
    forms = _forms(transforms)
    schema = contract.schema
    if schema.get("type") != "object" or set(schema) - {"type", "properties", "required"} \
            - ANNOTATIONS - {k for k in schema if str(k).startswith(("x-", "$"))}:
        raise Unsupported("the schema is not an object of properties")
    if "$ref" in schema or "$defs" in schema:
        raise Unsupported("the schema has references")
    compiler = _Compiler(settings)
    top = compiler._object(schema, 1, "(event)")
    read = pa.schema(list(top.arrow))
    made = _staged_columns(contract, spec)
    meta = [pa.field("event_time", UTC), pa.field("kafka_topic", pa.string()),
            pa.field("kafka_partition", pa.int32()), pa.field("kafka_offset", pa.int64()),
            pa.field("kafka_timestamp", UTC), pa.field("raw", pa.string())]
    staged = pa.schema(made.fields + meta)
    if tuple(staged.names) != spec.columnar_columns:
        raise Unsupported("the columnar stage's columns are not the contract's")
    time_field = contract.time_field
    if time_field is not None and time_field not in made.times:
        raise Unsupported(f"time_field {time_field!r} is not a date-time column")
    keys = sorted(k for k in compiler.null_keys if not k.endswith("[]"))
    nulls = ('|"(?:' + "|".join(re.escape(k) for k in keys) + r')"[ \t\r\n]*:[ \t\r\n]*null'
             if keys else "")
    return ColumnarPlan(contract.event_type, read, top, made.checks, made.times, staged,
                        made.build, forms, ODD_NUMBER + nulls, ODD_FRAMED_NUMBER + nulls,
                        time_field, min(settings.pipeline.max_message_bytes,
                                        settings.pipeline.max_string_length),
                        compiler.inexact, made.fits, made.from_records, unicode)


@dataclass
class _Staged:
    """How the event type's own columns of the columnar stage are made."""

    build: list[Callable[[pa.Table, Mapping[str, Any]], Any]] = field(default_factory=list)
    fields: list[pa.Field] = field(default_factory=list)
    checks: list[Callable[[pa.Table], Any]] = field(default_factory=list)
    times: list[str] = field(default_factory=list)  # the date-time columns, cast once
    fits: list[Callable[[pa.Table], Any]] = field(default_factory=list)
    from_records: list[tuple[str, FromRecords]] = field(default_factory=list)


def _staged_columns(contract: Contract, spec: TableSpec) -> _Staged:
    """The own columns of ``contract``'s columnar stage; raises :class:`Unsupported`."""
    props: Mapping[str, Any] = contract.schema["properties"]
    derived = dict(spec.from_raw)
    out = _Staged()
    for column in contract.columns:
        if column.mapping is not None:
            try:
                mapped = mapped_column(column.mapping, column.pg_type, contract.schema)
            except NotCompiled as why:
                raise Unsupported(f"mapped {why}") from None
            out.build.append(mapped.build)
            out.fields.append(pa.field(column.name, mapped.arrow))
            if mapped.fit is not None:
                out.fits.append(mapped.fit)
            if mapped.from_records is not None:
                out.from_records.append((column.name, mapped.from_records))
            continue
        prop = props.get(column.name)
        kinds = types_of(prop)
        if column.name in derived:
            # PostgreSQL reads these out of raw: only as the row path would read them.
            fits = kinds & ({"number", "integer"} if column.pg_type == "numeric"
                            else {"object", "array"})
            if not fits or kinds - fits:
                raise Unsupported(f"column {column.name!r}: {column.pg_type} of {kinds}")
            continue
        if column.pg_type == "timestamptz":
            out.times.append(column.name)
        if column.pg_type == "uuid":
            out.checks.append(_not_canonical_uuid(column.name))
        builder, arrow_type = _builder(column.name, column.pg_type, prop, kinds)
        out.build.append(builder)
        out.fields.append(pa.field(column.name, arrow_type))
    return out


def _forms(transforms: Sequence[tuple[str, ArrowForm | None]]) -> list[ArrowForm]:
    forms = []
    for name, form in transforms:
        if form is None:
            raise Unsupported(f"transform {name} has no Arrow form")
        forms.append(form)
    return forms


def _builder(name: str, pg_type: str, prop: Any, kinds: set[str]
             ) -> tuple[Callable[[pa.Table, Mapping[str, Any]], Any], pa.DataType]:
    """How a staged column is made from the read table (and the cast date-times), and its
    Arrow type."""
    fmt = prop.get("format") if isinstance(prop, Mapping) else None
    if pg_type == "text" and kinds == {"string"} and fmt is None:
        return (lambda t, c: t[name]), pa.string()
    if pg_type == "bigint" and kinds == {"integer"}:
        return (lambda t, c: t[name]), pa.int64()
    if pg_type == "boolean" and kinds == {"boolean"}:
        return (lambda t, c: t[name]), pa.bool_()
    if pg_type == "timestamptz" and kinds == {"string"} and fmt == "date-time":
        return (lambda t, c: c[name]), UTC
    if pg_type == "uuid" and kinds == {"string"} and fmt == "uuid":
        return (lambda t, c: _uuid_column(t[name])), pa.binary(16)
    items = prop.get("items") if isinstance(prop, Mapping) else None
    if pg_type == "text[]" and kinds == {"array"} and isinstance(items, Mapping) \
            and types_of(items) == {"string"} and "format" not in items:
        return (lambda t, c: t[name]), pa.list_(pa.field("item", pa.string()))
    raise Unsupported(f"column {name!r}: {pg_type} of {sorted(kinds)}")


def _uuid_column(text: Any) -> Any:
    """A uuid column: each present value as 16 bytes (checked canonical before)."""
    chunk = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    if chunk.null_count == 0:
        return uuid_bytes(chunk)
    filled = pc.fill_null(chunk, "00000000-0000-0000-0000-000000000000")
    return pc.if_else(pc.is_valid(chunk), uuid_bytes(filled),
                      pa.scalar(None, pa.binary(16)))
