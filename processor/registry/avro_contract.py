"""Contracts from Avro: a registered Avro schema seen as the JSON Schema the pipeline knows.

Everything after decoding (validation, typed columns, migrations, docs) speaks JSON Schema.
Rather than teach each of those parts a second schema language, an event type that names a
Schema Registry subject has its Avro record translated here into an equivalent draft-07
JSON Schema, written to accept exactly the "JSON-shaped" values the Avro decoder produces
(bytes as base64 text, timestamps as ISO 8601 text, decimals as ``Decimal``, ...).

Two more questions come with Avro and are answered here from the schemas alone, before any
message arrives: can data written with one schema be read with another (the spec's "Schema
Resolution"), and which reader fields must be filled from their defaults because the writer
does not have them.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"

AvroSchema = Mapping[str, Any] | str

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
_NAMED = frozenset({"record", "error", "enum", "fixed"})
# Logical types the decoder turns into JSON-shaped values, keyed by the only underlying type
# each is valid on. Any other pairing is, per the spec, ignored: the value is read as the
# underlying type, and fastavro (which keys its readers the same way) agrees.
_LOGICAL_ON = {
    "timestamp-millis": "long",
    "timestamp-micros": "long",
    "local-timestamp-millis": "long",
    "local-timestamp-micros": "long",
    "date": "int",
    "time-millis": "int",
    "time-micros": "long",
    "uuid": "string",
}
_PROMOTIONS = frozenset(
    {("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
     ("long", "double"), ("float", "double"), ("string", "bytes"), ("bytes", "string")}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSONB = "jsonb"
# Types whose property is always the same; copied before use, since callers add to it.
_SIMPLE: dict[str, dict[str, Any]] = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX,
            "x-weir-column-type": "integer"},
    "long": {"type": "integer", "minimum": LONG_MIN, "maximum": LONG_MAX},
    "float": {"type": "number", "x-weir-column-type": "double precision"},
    "double": {"type": "number", "x-weir-column-type": "double precision"},
    "string": {"type": "string"},
    "bytes": {"type": "string", "contentEncoding": "base64", "x-weir-column-type": "text"},
    "fixed": {"type": "string", "contentEncoding": "base64", "x-weir-column-type": "text"},
}


class AvroSchemaError(ValueError):
    """An Avro schema cannot be parsed, or is not a record where a record is needed."""


class _Schema:
    """A parsed Avro schema and the named types defined anywhere inside it."""

    __slots__ = ("names", "root")

    def __init__(self, schema: AvroSchema) -> None:
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise AvroSchemaError(f"the Avro schema is not valid JSON: {exc}") from None
        try:
            # parse_schema validates the schema (names, defaults, decimal bounds) and makes
            # every name and reference fully qualified, so one flat name table suffices.
            self.root: Any = fastavro.parse_schema(
                schema if isinstance(schema, str) else dict(schema), _write_hint=False)
        except (SchemaParseException, UnknownType, TypeError, ValueError, KeyError) as exc:
            raise AvroSchemaError(f"not a valid Avro schema: {exc}") from None
        self.names: dict[str, Mapping[str, Any]] = {}
        self._collect(self.root)

    def _collect(self, node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                self._collect(branch)
            return
        if not isinstance(node, Mapping):
            return
        kind = node.get("type")
        if not isinstance(kind, str):
            self._collect(kind)
            return
        if kind in _NAMED:
            self.names[str(node["name"])] = node
        if kind in {"record", "error"}:
            for field in node["fields"]:
                self._collect(field["type"])
        elif kind == "array":
            self._collect(node["items"])
        elif kind == "map":
            self._collect(node["values"])

    def resolve(self, node: Any) -> Any:
        """The node itself, with a reference to a named type replaced by its definition."""
        while True:
            if isinstance(node, str) and node not in _PRIMITIVES:
                node = self.names[node]
            elif isinstance(node, Mapping) and not isinstance(node.get("type"), str):
                node = node["type"]
            elif (isinstance(node, Mapping) and node["type"] not in _PRIMITIVES
                  and node["type"] not in _NAMED and node["type"] not in {"array", "map"}):
                node = node["type"]  # {"type": "some.Name"} is a reference too
            else:
                return node

    def top_record(self) -> Mapping[str, Any]:
        root = self.resolve(self.root)
        if _kind(root) not in {"record", "error"}:
            raise AvroSchemaError(f"the Avro schema must be a record, not {_describe(root)}")
        return root  # type: ignore[no-any-return]


def _kind(node: Any) -> str:
    """``union`` for a union, else the Avro type name of a resolved node."""
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    return str(node["type"])


def _logical(node: Any) -> str | None:
    """The node's logical type if the decoder honours it there, else None (read as underlying)."""
    if not isinstance(node, Mapping):
        return None
    logical = node.get("logicalType")
    kind = node["type"]
    if logical == "decimal":
        # precision is mandatory; without it the spec says to read the plain bytes.
        return "decimal" if kind in {"bytes", "fixed"} and "precision" in node else None
    if isinstance(logical, str) and _LOGICAL_ON.get(logical) == kind:
        return logical
    return None


def _decimal_of(node: Mapping[str, Any]) -> tuple[int, int]:
    return int(node["precision"]), int(node.get("scale", 0))


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _describe(node: Any) -> str:
    if isinstance(node, list):
        return "[" + ", ".join(_describe(b) for b in node) + "]"
    kind = _kind(node)
    if kind in _NAMED:
        return f"{kind} {node['name']}"
    logical = _logical(node)
    if logical == "decimal":
        precision, scale = _decimal_of(node)
        return f"{kind} decimal({precision},{scale})"
    return f"{kind} ({logical})" if logical else kind


# ---------------------------------------------------------------------------------------
# Avro → JSON Schema
# ---------------------------------------------------------------------------------------


def json_schema_from_avro(schema: AvroSchema, *, version: int) -> dict[str, Any]:
    """Translate a top-level Avro record into the draft-07 JSON Schema of its decoded events.

    The result has the shape of a schema file in ``schemas/``, so
    ``processor.contracts`` validates and derives columns from it unchanged. Field names are
    kept as they are: one that is not a safe column name is refused by ``derive_columns``.

    Each field becomes a property (its ``doc`` as ``description``; its Avro ``default``, if
    any, as the informational ``x-weir-avro-default``). A field is required unless its type
    is a union containing ``null``.

    | Avro | JSON Schema property | column |
    |---|---|---|
    | `[null, T]`, `[T, null]` | T's, `"null"` added to `type` (and to `enum`) | T's, nullable |
    | `null` | `{"type": "null"}` | jsonb |
    | `boolean` | `{"type": "boolean"}` | boolean |
    | `int` | `{"type": "integer", "minimum": -2**31, "maximum": 2**31-1}` | integer * |
    | `long` | `{"type": "integer", "minimum": -2**63, "maximum": 2**63-1}` | bigint |
    | `float`, `double` | `{"type": "number"}` | double precision * |
    | `string` | `{"type": "string"}` | text |
    | `bytes`, `fixed` | `{"type": "string", "contentEncoding": "base64"}` | text * |
    | `enum` | `{"type": "string", "enum": [symbols]}` | text |
    | [local-]timestamp-millis/-micros | `{"type": "string", "format": "date-time"}` | timestamptz |
    | date | `{"type": "string", "format": "date"}` | date |
    | time-millis, time-micros | `{"type": "string"}` | text * |
    | uuid (on `string`) | `{"type": "string", "format": "uuid"}` | uuid |
    | decimal(p, s) | `{"type": "number", "x-weir-precision": p, "x-weir-scale": s}` | numeric * |
    | `record` | `{"type": "object", "properties": {...}, "required": [...]}` | jsonb |
    | `array` | `{"type": "array", "items": ...}` | jsonb |
    | `map` | `{"type": "object", "additionalProperties": ...}` | jsonb |
    | any other union | `{}` | jsonb * |
    | a record inside itself | `{}` (at the point of recursion) | jsonb * |

    A column marked * is set explicitly: the property also has ``"x-weir-column-type"`` with
    that column type. Logical types apply only on the underlying type the spec defines them
    for (timestamps on ``long``, date and time-millis on ``int``, time-micros on ``long``,
    uuid on ``string``, decimal on ``bytes`` or ``fixed``).

    Other unions and recursive references carry no constraint: Avro decoding already
    checked the value. A logical type that is unknown, or on an underlying type it is not
    defined for, is ignored and the underlying type's row applies (as the spec says, and as
    fastavro reads it); so are timestamp-nanos and uuid on ``fixed``, which fastavro does not
    convert.

    Args:
        schema: The Avro schema, parsed (a dict) or as JSON text; its top level must be a
            record.
        version: The contract version to record (e.g. the registry's subject version).

    Returns:
        A new JSON Schema dict: ``$schema``, ``title`` (the record's full name),
        ``description`` (its doc, if any), ``version``, ``type``, ``required`` and
        ``properties``.

    Raises:
        AvroSchemaError: The schema is not valid Avro, or its top level is not a record.
    """
    parsed = _Schema(schema)
    record = parsed.top_record()
    body = _record_to_json(parsed, record, (str(record["name"]),))
    result: dict[str, Any] = {"$schema": JSON_SCHEMA_DRAFT, "title": str(record["name"])}
    if record.get("doc"):
        result["description"] = str(record["doc"])
    result["version"] = version
    result["type"] = "object"
    result["required"] = body["required"]
    result["properties"] = body["properties"]
    return result


def _record_to_json(
    parsed: _Schema, record: Mapping[str, Any], stack: tuple[str, ...]
) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in record["fields"]:
        name = str(field["name"])
        prop = _to_json(parsed, field["type"], stack)
        if field.get("doc"):
            prop["description"] = str(field["doc"])
        if "default" in field:
            prop["x-weir-avro-default"] = field["default"]
        properties[name] = prop
        if not _allows_null(parsed, field["type"]):
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _allows_null(parsed: _Schema, node: Any) -> bool:
    node = parsed.resolve(node)
    return isinstance(node, list) and any(_kind(parsed.resolve(b)) == "null" for b in node)


def _to_json(parsed: _Schema, node: Any, stack: tuple[str, ...]) -> dict[str, Any]:  # noqa: PLR0911 - a row each
    node = parsed.resolve(node)
    kind = _kind(node)
    if kind == "union":
        return _union_to_json(parsed, node, stack)
    logical = _logical(node)
    if logical is not None:
        return _logical_to_json(node, logical)
    if kind in {"record", "error"}:
        name = str(node["name"])
        if name in stack:
            return {"x-weir-column-type": _JSONB}
        return _record_to_json(parsed, node, (*stack, name))
    if kind == "array":
        return {"type": "array", "items": _to_json(parsed, node["items"], stack)}
    if kind == "map":
        return {"type": "object", "additionalProperties": _to_json(parsed, node["values"], stack)}
    if kind == "enum":
        return {"type": "string", "enum": list(node["symbols"])}
    if kind in _SIMPLE:
        return dict(_SIMPLE[kind])
    raise AvroSchemaError(f"unknown Avro type {kind!r}")


def _logical_to_json(node: Mapping[str, Any], logical: str) -> dict[str, Any]:
    if logical == "decimal":
        precision, scale = _decimal_of(node)
        return {"type": "number", "x-weir-column-type": "numeric",
                "x-weir-precision": precision, "x-weir-scale": scale}
    if logical == "date":
        return {"type": "string", "format": "date"}
    if logical == "uuid":
        return {"type": "string", "format": "uuid"}
    if logical.startswith("time-"):
        # PostgreSQL's time type exists, but contracts.py offers no override for it; text
        # keeps the decoder's "HH:MM:SS[.ffffff]" exactly.
        return {"type": "string", "x-weir-column-type": "text"}
    return {"type": "string", "format": "date-time"}


def _union_to_json(parsed: _Schema, branches: list[Any], stack: tuple[str, ...]) -> dict[str, Any]:
    concrete = [b for b in branches if _kind(parsed.resolve(b)) != "null"]
    if not concrete:
        return {"type": "null"}
    if len(concrete) == 1 and len(branches) == 2:
        prop = _to_json(parsed, concrete[0], stack)
        if "type" not in prop:
            return prop  # already accepts anything, null included
        types = prop["type"]
        prop["type"] = [*(types if isinstance(types, list) else [types]), "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]
        return prop
    return {"x-weir-column-type": _JSONB}


# ---------------------------------------------------------------------------------------
# Schema resolution
# ---------------------------------------------------------------------------------------


def avro_problems(writer: AvroSchema, reader: AvroSchema) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``, per Avro resolution.

    Follows the spec's "Schema Resolution": reader fields the writer lacks (by name or by
    one of the reader field's aliases) need a default; writer-only fields are dropped;
    ``int`` promotes to ``long``/``float``/``double``, ``long`` to ``float``/``double``,
    ``float`` to ``double``, and ``string`` and ``bytes`` to each other; an enum symbol the
    reader lacks needs the reader enum's default; records, enums and fixed match by
    unqualified name (or a reader alias), fixed also by size; arrays and maps by their items
    and values; every branch of a writer union (or the writer itself, if not a union) must
    match a branch of a reader union (or the reader itself); ``null`` only reads as
    ``null``. Beyond fastavro, which does not check them, decimals must agree on precision
    and scale. Other logical types do not take part, as in the spec.

    Args:
        writer: The schema the data was written with, parsed or as JSON text.
        reader: The schema the data is to be read with, parsed or as JSON text.

    Returns:
        One message per problem, each naming the field path (like ``"address.city"``,
        ``"items[].sku"`` for array items, ``"tags{}"`` for map values); empty if every
        datum the writer can write can be read.

    Raises:
        AvroSchemaError: Either schema is not valid Avro.
    """
    checker = _Resolution(_Schema(writer), _Schema(reader))
    checker.check(checker.writer.root, checker.reader.root, "")
    return checker.problems


class _Resolution:
    """One resolution check: both schemas' name tables, what was found, what was seen."""

    def __init__(self, writer: _Schema, reader: _Schema) -> None:
        self.writer = writer
        self.reader = reader
        self.problems: list[str] = []
        # Record pairs already (or being) compared: recursive types would loop forever and
        # a named type reused in many places need be compared once.
        self._seen: set[tuple[str, str]] = set()

    def check(self, w_node: Any, r_node: Any, path: str) -> None:
        w_node = self.writer.resolve(w_node)
        r_node = self.reader.resolve(r_node)
        if isinstance(w_node, list):
            for branch in w_node:
                self._check_branch(self.writer.resolve(branch), r_node, path, union=True)
        else:
            self._check_branch(w_node, r_node, path, union=False)

    def _check_branch(self, w_node: Any, r_node: Any, path: str, *, union: bool) -> None:
        writer_says = "the writer's union branch" if union else "the writer's"
        if isinstance(r_node, list):
            chosen = self._pick(w_node, [self.reader.resolve(b) for b in r_node])
            if chosen is None:
                self.problems.append(f"{_where(path)}: {writer_says} {_describe(w_node)} "
                                     f"matches no branch of the reader's union "
                                     f"{_describe(r_node)}")
                return
            r_node = chosen
        elif not self._matches(w_node, r_node):
            self.problems.append(f"{_where(path)}: {writer_says} {_describe(w_node)} cannot be "
                                 f"read as {_describe(r_node)}{self._why(w_node, r_node)}")
            return
        self._deep(w_node, r_node, path)

    def _pick(self, w_node: Any, branches: list[Any]) -> Any:
        # The spec takes the first matching branch; like Avro's Java reader we prefer one of
        # the very same type over one reached by promotion, so an int is not read as a long
        # when the reader's union also has an int.
        for exact in (True, False):
            for branch in branches:
                if self._matches(w_node, branch) and (not exact or
                                                      _kind(branch) == _kind(w_node)):
                    return branch
        return None

    def _matches(self, w_node: Any, r_node: Any) -> bool:
        """The spec's shallow "schemas match": same kind (or a promotion), same name."""
        w_kind, r_kind = _kind(w_node), _kind(r_node)
        if r_kind == "union":
            return False
        if w_kind != r_kind:
            return (w_kind, r_kind) in _PROMOTIONS
        if w_kind in _NAMED:
            if not self._same_name(w_node, r_node):
                return False
            return w_kind != "fixed" or w_node["size"] == r_node["size"]
        return True

    @staticmethod
    def _same_name(w_node: Mapping[str, Any], r_node: Mapping[str, Any]) -> bool:
        w_name, r_name = str(w_node["name"]), str(r_node["name"])
        if _short(w_name) == _short(r_name):
            return True
        namespace = r_name.rpartition(".")[0]
        aliases = {a if "." in a or not namespace else f"{namespace}.{a}"
                   for a in r_node.get("aliases", [])}
        return w_name in aliases or _short(w_name) in {_short(a) for a in aliases}

    def _why(self, w_node: Any, r_node: Any) -> str:
        w_kind, r_kind = _kind(w_node), _kind(r_node)
        if w_kind == r_kind == "fixed" and self._same_name(w_node, r_node):
            return f" (size {w_node['size']} in the writer, {r_node['size']} in the reader)"
        if w_kind == r_kind and w_kind in _NAMED:
            return " (the names differ and the reader has no such alias)"
        return ""

    def _deep(self, w_node: Any, r_node: Any, path: str) -> None:
        kind = _kind(r_node)
        if kind in {"record", "error"} and _kind(w_node) in {"record", "error"}:
            key = (str(w_node["name"]), str(r_node["name"]))
            if key not in self._seen:
                self._seen.add(key)
                self._records(w_node, r_node, path)
        elif kind == "enum":
            self._enums(w_node, r_node, path)
        elif kind == "array":
            self.check(w_node["items"], r_node["items"], f"{path}[]")
        elif kind == "map":
            self.check(w_node["values"], r_node["values"], f"{path}{{}}")
        elif _logical(w_node) == "decimal" and _logical(r_node) == "decimal":
            w_dec, r_dec = _decimal_of(w_node), _decimal_of(r_node)
            if w_dec != r_dec:
                self.problems.append(
                    f"{_where(path)}: decimal({w_dec[0]},{w_dec[1]}) in the writer is "
                    f"decimal({r_dec[0]},{r_dec[1]}) in the reader; precision and scale "
                    "must match")

    def _records(self, w_node: Mapping[str, Any], r_node: Mapping[str, Any], path: str) -> None:
        w_fields = {str(f["name"]): f for f in w_node["fields"]}
        for r_field in r_node["fields"]:
            name = str(r_field["name"])
            field_path = f"{path}.{name}" if path else name
            w_field = _writer_field(w_fields, r_field)
            if w_field is not None:
                self.check(w_field["type"], r_field["type"], field_path)
            elif "default" not in r_field:
                self.problems.append(
                    f"field {field_path!r} is new in the reader and has no default")

    def _enums(self, w_node: Mapping[str, Any], r_node: Mapping[str, Any], path: str) -> None:
        missing = [s for s in w_node["symbols"] if s not in r_node["symbols"]]
        if missing and "default" not in r_node:
            self.problems.append(
                f"{_where(path)}: the writer's enum symbols {missing} are not in the reader's "
                "enum, which has no default")


def _where(path: str) -> str:
    return repr(path) if path else "the top-level schema"


def _writer_field(
    w_fields: Mapping[str, Mapping[str, Any]], r_field: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The writer field that fills a reader field: same name first, then a reader alias."""
    for name in (r_field["name"], *r_field.get("aliases", [])):
        if name in w_fields:
            return w_fields[name]
    return None


# ---------------------------------------------------------------------------------------
# Reader defaults
# ---------------------------------------------------------------------------------------


def reader_defaults(writer: AvroSchema, reader: AvroSchema) -> dict[str, Any]:
    """Top-level reader fields the writer lacks, with their defaults as decoded values.

    A reader field counts as present if the writer has a field of its name or of one of
    its aliases. Defaults are converted the way the decoder converts data: ``null`` →
    ``None``; ``bytes``/``fixed`` (Avro JSON: a string of code points 0-255) → base64
    text; decimal → ``Decimal``; timestamps → ISO 8601 UTC text; date → ``YYYY-MM-DD``;
    time → ``HH:MM:SS[.ffffff]``; uuid → canonical text; float/double → ``float``; a union's
    default by the first branch it fits; records, arrays and maps item by item (a record
    default missing a field takes that field's own default).

    Reader fields the writer lacks and that have no default are left out; ``avro_problems``
    reports them.

    Args:
        writer: The schema the data was written with, parsed or as JSON text.
        reader: The schema the contract was derived from, parsed or as JSON text.

    Returns:
        Field name → JSON-shaped default, in reader field order.

    Raises:
        AvroSchemaError: Either schema is not valid Avro or not a record at the top level.
    """
    w_record = _Schema(writer).top_record()
    parsed = _Schema(reader)
    r_record = parsed.top_record()
    w_fields = {str(f["name"]): f for f in w_record["fields"]}
    return {
        str(field["name"]): _default_value(parsed, field["type"], field["default"])
        for field in r_record["fields"]
        if "default" in field and _writer_field(w_fields, field) is None
    }


def _default_value(parsed: _Schema, node: Any, value: Any) -> Any:  # noqa: PLR0911 - per type
    node = parsed.resolve(node)
    kind = _kind(node)
    if kind == "union":
        branch = next((b for b in node if _fits(parsed, b, value)), node[0])
        return _default_value(parsed, branch, value)
    logical = _logical(node)
    if logical is not None:
        return _logical_default(node, logical, value)
    if value is None:
        return None
    if kind in {"record", "error"}:
        return {
            str(f["name"]): _default_value(
                parsed, f["type"], value[f["name"]] if f["name"] in value else f["default"])
            for f in node["fields"]
            if f["name"] in value or "default" in f
        }
    if kind == "array":
        return [_default_value(parsed, node["items"], item) for item in value]
    if kind == "map":
        return {str(k): _default_value(parsed, node["values"], v) for k, v in value.items()}
    if kind in {"bytes", "fixed"}:
        return base64.b64encode(str(value).encode("latin-1")).decode("ascii")
    if kind in {"float", "double"}:
        return float(value)  # JSON "1" for a double; also "NaN" and "Infinity"
    return value


def _logical_default(node: Mapping[str, Any], logical: str, value: Any) -> Any:
    if logical == "decimal":
        _, scale = _decimal_of(node)
        unscaled = int.from_bytes(str(value).encode("latin-1"), "big", signed=True)
        # Built from digits, not by arithmetic, so no context precision can round it.
        digits = tuple(int(d) for d in str(abs(unscaled)))
        return Decimal((1 if unscaled < 0 else 0, digits, -scale))
    if logical == "uuid":
        return str(uuid.UUID(str(value)))
    if logical == "date":
        return (_EPOCH + timedelta(days=int(value))).date().isoformat()
    if logical.startswith("time-"):
        unit = "milliseconds" if logical.endswith("millis") else "microseconds"
        return (datetime.min + timedelta(**{unit: int(value)})).time().isoformat()
    unit = "milliseconds" if logical.endswith("millis") else "microseconds"
    return (_EPOCH + timedelta(**{unit: int(value)})).isoformat()


def _fits(parsed: _Schema, node: Any, value: Any) -> bool:  # noqa: PLR0911 - per type
    """Whether a JSON default value has the shape of this (union branch) schema."""
    kind = _kind(parsed.resolve(node))
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in {"int", "long"}:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in {"float", "double"}:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in {"string", "bytes", "fixed", "enum"}:
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)
