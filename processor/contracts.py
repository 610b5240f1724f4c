"""Event contracts: the JSON Schemas in ``schemas/``, loaded and compiled once at start.

A contract knows its event type, its version, how to validate an event (compiled by
fastjsonschema into plain Python, once) and which typed columns its table has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import structlog

from processor.core.child_layout import ORIGIN, ChildLayout, table_key
from processor.core.errors import WeirError
from processor.core.retry import Backoff
from processor.core.row_layout import DELETED_AT, META_TYPES, SOURCE_POSITION
from processor.core.settings import (
    IDENTIFIER,
    EventTypeSettings,
    MappedColumnSettings,
    Settings,
)
from processor.core.verdict import Verdict, verdict

Validator = Callable[[Any], Any]
log = structlog.get_logger(__name__)

# Column types a schema may ask for explicitly with "x-weir-column-type".
ALLOWED_OVERRIDES = frozenset(
    {"text", "bigint", "integer", "numeric", "double precision", "boolean", "timestamptz",
     "date", "uuid", "jsonb", "text[]", "bigint[]", "numeric[]", "uuid[]", "timestamptz[]"}
)
NUMERIC_TYPES = frozenset({"bigint", "integer", "numeric", "double precision"})
# Names Weir adds to every target table; a schema property may not take them.
METADATA_COLUMNS = (
    "event_time", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp",
    "raw", "ingested_at",
)


@dataclass(frozen=True, slots=True)
class Column:
    """One typed column: a top-level schema property, or a path the config maps."""

    name: str
    pg_type: str
    nullable: bool
    mapping: MappedColumnSettings | None = None  # None: the schema property ``name``


@dataclass(frozen=True, slots=True)
class Contract:
    """A compiled event contract."""

    event_type: str
    version: int
    schema: Mapping[str, Any]
    validate: Validator
    columns: tuple[Column, ...]
    id_field: str | None
    time_field: str | None
    key_field: str | None
    # A registry subject's contract: its schema type (AVRO, PROTOBUF, JSON) and its parsed
    # schema, the reader side events written with other versions resolve to.
    registry_type: str | None = None
    reader: Any = None
    children: tuple[ChildLayout, ...] = ()  # arrays exploded into child tables


class ContractError(ValueError):
    """A schema file cannot serve as a contract; the message names the file and the fault."""


def column_type(prop: Mapping[str, Any]) -> tuple[str, bool]:
    """Map one JSON Schema property to (PostgreSQL type, allows null)."""
    override = prop.get("x-weir-column-type")
    types = prop.get("type")
    type_list = [types] if isinstance(types, str) else list(types or [])
    nullable = "null" in type_list
    concrete = [t for t in type_list if t != "null"]
    if override is not None:
        if override not in ALLOWED_OVERRIDES:
            raise ContractError(
                f"x-weir-column-type {override!r} is not one of {sorted(ALLOWED_OVERRIDES)}"
            )
        return str(override), nullable
    if len(concrete) != 1:
        return "jsonb", nullable
    kind = concrete[0]
    if kind == "string":
        fmt = prop.get("format")
        formats = {"date-time": "timestamptz", "date": "date", "uuid": "uuid"}
        return formats.get(str(fmt), "text"), nullable
    simple = {"integer": "bigint", "number": "numeric", "boolean": "boolean"}
    return simple.get(kind, "jsonb"), nullable


def derive_columns(schema: Mapping[str, Any]) -> tuple[Column, ...]:
    """Typed columns for every top-level property, in schema order."""
    required = set(schema.get("required", []))
    columns = []
    for name, prop in schema.get("properties", {}).items():
        if not IDENTIFIER.match(name):
            raise ContractError(f"property {name!r} is not a safe column name")
        if name in METADATA_COLUMNS:
            raise ContractError(f"property {name!r} collides with a column Weir adds itself")
        pg_type, nullable = column_type(prop)
        columns.append(Column(name, pg_type, nullable or name not in required))
    return tuple(columns)


def _check_rollups(name: str, et: EventTypeSettings, columns: tuple[Column, ...]) -> None:
    numeric = {c.name for c in columns if c.pg_type in NUMERIC_TYPES}
    for rollup in et.rollups:
        for field in rollup.sums:
            if field not in numeric:
                raise ContractError(
                    f"event_types.{name}.rollups ({rollup.table}): {field!r} is not a numeric "
                    "schema property (integer or number), so it cannot be summed"
                )


def _schema_file(name: str, path: Path) -> tuple[Any, str]:
    """The JSON Schema of a ``schema_file`` contract, and where it came from."""
    try:
        schema = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ContractError(
            f"event_types.{name}.schema_file: {str(path)!r} does not exist"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"event_types.{name}.schema_file: not valid JSON: {exc}") from None
    return schema, f"event_types.{name}.schema_file ({path.name})"


def load_contract(name: str, path: Path | None, settings: Settings,
                  registered: Registered | None = None) -> Contract:
    """Load, check and compile one event type's schema: a file, or a registry subject's
    version already derived as a JSON Schema (``registered``)."""
    et = settings.event_types[name]
    if registered is not None:
        schema, where = registered.schema, registered.where
    elif et.contract is not None:
        schema, where = et.contract, f"event_types.{name}.contract"
    else:
        assert path is not None
        schema, where = _schema_file(name, path)
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ContractError(f"{where}: the schema must describe an object (type: object)")
    try:
        validate = fastjsonschema.compile(schema)
        columns = derive_columns(schema)
    except (fastjsonschema.JsonSchemaDefinitionException, ContractError) as exc:
        raise ContractError(f"{where}: {exc}") from None
    names = {c.name for c in columns}
    required = set(schema.get("required", []))
    mapped = _mapped_columns(name, et, names)
    for field, label in ((et.id_field, "id_field"), (et.time_field, "time_field"),
                         (et.key_field, "key_field")):
        if label == "time_field" and field in mapped:
            continue  # its type is checked below; absent in an event, a dead letter
        if field is not None and field not in names:
            raise ContractError(f"event_types.{name}.{label}: {field!r} is not a schema property")
        if field is not None and label != "key_field" and field not in required:
            raise ContractError(f"event_types.{name}.{label}: {field!r} must be required")
    columns = (*columns, *mapped.values(), *_mirror_columns(name, et, names | set(mapped)))
    names |= set(mapped)
    for field in et.upsert_key:
        if field not in mapped and (field not in names or field not in required):
            raise ContractError(
                f"event_types.{name}.upsert_key: {field!r} must be a required schema property "
                "or a mapped column (an event without its value is a dead letter)"
            )
    _check_version(name, et, columns, required)
    _check_rollups(name, et, columns)
    _check_indexes(name, et, names)
    children = _children(name, et, columns)
    time_col = next((c for c in columns if c.name == et.time_field), None)
    if time_col is not None and time_col.pg_type != "timestamptz":
        raise ContractError(
            f"event_types.{name}.time_field: {et.time_field!r} must be a string with "
            "format date-time, or a mapped column of type timestamptz"
        )
    return Contract(
        event_type=name,
        version=int(schema.get("version", 1)),
        schema=schema,
        validate=validate,
        columns=columns,
        id_field=et.id_field,
        time_field=et.time_field,
        key_field=et.key_field,
        registry_type=registered.schema_type if registered else None,
        reader=registered.reader if registered else None,
        children=children,
    )


def _mirror_columns(name: str, et: EventTypeSettings, taken: set[str]) -> tuple[Column, ...]:
    """A mirror's columns that Weir fills from the change's envelope, last of its own
    (:mod:`processor.core.row_layout` places them)."""
    if et.envelope != "debezium":
        return ()
    wanted = (*((DELETED_AT,) if et.deletes == "soft" else ()), SOURCE_POSITION)
    for meta in wanted:
        if meta.name in taken:
            raise ContractError(f"event_types.{name}: {meta.name!r} is a column Weir adds to a "
                                "mirror itself; the schema or a mapped column takes it")
    return tuple(Column(m.name, m.pg_type, m.nullable) for m in wanted)


def _mapped_columns(name: str, et: EventTypeSettings, own: set[str]) -> dict[str, Column]:
    """The config's mapped columns, by name, after checking they take no other's name."""
    out: dict[str, Column] = {}
    for mapped in et.columns:
        where = f"event_types.{name}.columns ({mapped.name})"
        if mapped.name in own:
            raise ContractError(f"{where}: the schema has a property {mapped.name!r}, whose "
                                "column this would replace; name the mapped column otherwise")
        if mapped.name in METADATA_COLUMNS:
            raise ContractError(f"{where}: {mapped.name!r} is a column Weir adds itself")
        # Nullable, but for a part of the upsert key (an event without it is refused).
        out[mapped.name] = Column(mapped.name, mapped.type, mapped.name not in et.upsert_key,
                                  mapped)
    return out


def _children(name: str, et: EventTypeSettings, columns: tuple[Column, ...]
              ) -> tuple[ChildLayout, ...]:
    """The child tables' layouts, after checking their columns' names, sums and indexes."""
    types = {**META_TYPES, **{c.name: c.pg_type for c in columns}}
    parent = tuple((k, types[k]) for k in table_key(et, et.id_field))
    out = []
    for i, child in enumerate(et.children):
        where = f"event_types.{name}.children.{i} ({child.table})"
        layout = ChildLayout(child, parent, tuple((c.name, c.type) for c in child.columns))
        names = list(layout.stage_columns)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ContractError(f"{where}: columns {twice} would appear twice (the parent's "
                                f"key {list(layout.head)}, {list(ORIGIN)} and index_column "
                                "are the child's own)")
        numeric = {n for n, t in layout.items if t in NUMERIC_TYPES}
        for rollup in child.rollups:
            for field in rollup.sums:
                if field not in numeric:
                    raise ContractError(f"{where}, rollup {rollup.table}: {field!r} is not a "
                                        "numeric column of the item, so it cannot be summed")
        for index in child.indexes:
            for column in index.columns:
                if column not in layout.columns:
                    raise ContractError(f"{where}, an index: {column!r} is not a column of "
                                        f"the child table ({list(layout.columns)})")
        out.append(layout)
    return tuple(out)


# Types whose order is the order of versions.
ORDERED_TYPES = frozenset({"timestamptz", "date", "bigint", "integer", "numeric",
                           "double precision"})


def _check_version(name: str, et: EventTypeSettings, columns: tuple[Column, ...],
                   required: set[str]) -> None:
    if et.version_field is None:
        return
    column = next((c for c in columns if c.name == et.version_field), None)
    if column is None or et.version_field not in required:
        raise ContractError(f"event_types.{name}.version_field: {et.version_field!r} must be "
                            "a required schema property")
    if column.pg_type not in ORDERED_TYPES:
        raise ContractError(f"event_types.{name}.version_field: {et.version_field!r} is "
                            f"{column.pg_type}; versions are ordered by a number, a date or "
                            "a date-time")


def _check_indexes(name: str, et: EventTypeSettings, names: set[str]) -> None:
    known = names | set(METADATA_COLUMNS)
    for i, index in enumerate(et.indexes):
        for column in index.columns:
            if column not in known:
                raise ContractError(f"event_types.{name}.indexes.{i}.columns: {column!r} is "
                                    "neither a schema property, a mapped column nor a column "
                                    "Weir adds")


@dataclass(frozen=True, slots=True)
class Registered:
    """A registry subject's version as a contract: its JSON Schema and its reader schema."""

    schema: dict[str, Any]
    where: str
    schema_type: str
    reader: Any


def registered_contract(name: str, settings: Settings, wait: bool = False) -> Registered:
    """The contract of an event type that names a registry subject: the version it names
    (or the latest), derived as a JSON Schema by the documented type mapping.

    With ``wait``, a registry that does not answer (or refuses us) is asked again, on a
    capped backoff, until it does: ``weir run`` starts once its contracts are there.
    """
    from processor.registry.client import RegistryClient
    from processor.registry.contract import derive

    et = settings.event_types[name]
    assert et.registry_subject is not None
    where = (f"event_types.{name}.registry_subject ({et.registry_subject!r} version "
             f"{et.registry_version})")
    client = RegistryClient(settings.schema_registry)
    attempt = 0
    while True:
        try:
            found = client.version(et.registry_subject, et.registry_version)
            schema, reader = derive(client.resolve(found.schema), found.version,
                                    et.registry_message, et.envelope)
            break
        except (WeirError, ValueError) as exc:
            if not wait or verdict(exc) is not Verdict.STALL:
                raise ContractError(f"{where}: {exc}") from None
            delay = Backoff(1.0, settings.postgres.start_retry_max_s).delay(attempt)
            log.warning("the schema registry does not answer for a contract; waiting",
                        event_type=name, error=str(exc), retry_in_s=round(delay, 1))
            time.sleep(delay)  # start-up, before any loop runs
            attempt += 1
    where = (f"event_types.{name}.registry_subject ({et.registry_subject!r} version "
             f"{found.version}, id {found.schema.schema_id})")
    return Registered(schema, where, found.schema.schema_type, reader)


def load_contracts(settings: Settings, wait_for_registry: bool = False
                   ) -> dict[str, Contract]:
    """Compile every configured event type, collecting all faults before raising."""
    contracts: dict[str, Contract] = {}
    problems: list[str] = []
    for name, et in settings.event_types.items():
        try:
            if et.registry_subject is not None:
                contracts[name] = load_contract(
                    name, None, settings, registered_contract(name, settings,
                                                              wait_for_registry))
            else:
                path = None if et.contract is not None else settings.schema_path(name)
                contracts[name] = load_contract(name, path, settings)
        except ContractError as exc:
            problems.append(str(exc))
    if problems:
        raise ContractError("\n".join(problems))
    return contracts
