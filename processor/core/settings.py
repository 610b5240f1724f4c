"""One frozen settings object, read from a YAML file and ``WEIR_*`` environment variables.

Environment variables win over the file, so one file serves every environment. Nested
settings use a double underscore: ``WEIR_POSTGRES__DSN``, ``WEIR_BATCH__MAX_ROWS``. The object
is built once at start and passed down; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from processor.core.errors import ConfigError
from processor.core.paths import parse_path

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MiB = 1024 * 1024

PositiveInt = Annotated[int, Field(gt=0)]


def check_identifier(value: str) -> str:
    """Accept only lower-case SQL identifiers; hostile names never reach SQL."""
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a safe SQL identifier: use lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return value


def check_identifiers(values: list[str]) -> list[str]:
    """:func:`check_identifier` for each of a list of names."""
    return [check_identifier(v) for v in values]


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret given inline (or by environment) wins over one read from a mounted file."""
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        return file.read_text().strip()
    return None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """How to reach Kafka and how the consumer group behaves."""

    bootstrap_servers: str = "127.0.0.1:19092"
    group_id: str = "weir"
    client_id: str = "weir"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    fetch_max_records: PositiveInt = 2000
    fetch_timeout_ms: PositiveInt = 200
    max_partition_fetch_bytes: PositiveInt = 1 * MiB
    fetch_max_bytes: PositiveInt = 4 * MiB
    # Static membership: this member's stable id in the group (a pod name, a StatefulSet
    # ordinal). A member that restarts within session_timeout_ms gets its partitions back
    # and nobody else pauses. None: dynamic membership. With --workers, each worker adds
    # "-<index>". Two live processes with one id are refused (docs/scaling.md).
    group_instance_id: str | None = None
    session_timeout_ms: PositiveInt = 10_000
    heartbeat_interval_ms: PositiveInt = 3_000
    max_poll_interval_ms: PositiveInt = 300_000
    commit_interval_s: Annotated[float, Field(gt=0)] = 1.0
    topic_partitions: PositiveInt = 6
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            if not self.sasl_username:
                raise ValueError(f"kafka.sasl_username is required with {self.security_protocol}")
            if self.sasl_password is None and self.sasl_password_file is None:
                raise ValueError(
                    f"kafka.sasl_password or kafka.sasl_password_file is required with "
                    f"{self.security_protocol}"
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"kafka.{name}: {str(path)!r} is not a readable file")
        return self

    def resolved_sasl_password(self) -> str | None:
        """The SASL password from ``sasl_password`` or ``sasl_password_file``; never logged."""
        return read_secret(self.sasl_password, self.sasl_password_file)

    @field_validator("group_instance_id")
    @classmethod
    def _instance_id(cls, value: str | None) -> str | None:
        # Kafka's own rule for ids (as for topic names), with room for a worker's suffix.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", value):
            raise ValueError(f"{value!r}: use 1 to 200 letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                "kafka.heartbeat_interval_ms must be at most a third of "
                "kafka.session_timeout_ms, or the group drops healthy members"
            )
        return self


class PostgresSettings(_Section):
    """How to reach PostgreSQL and where Weir keeps its own tables."""

    dsn: str = "postgresql://weir@127.0.0.1:15432/weir"
    password: SecretStr | None = None
    password_file: Path | None = None
    schema_name: str = "public"
    offsets_table: str = "weir_offsets"
    dead_letter_table: str = "weir_dead_letters"
    pool_size: PositiveInt = 6
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    statement_timeout_ms: PositiveInt = 60_000
    breaker_failures: PositiveInt = 5
    breaker_open_s: Annotated[float, Field(gt=0)] = 5.0
    # A privilege, table or column error mid-run: "stall" pauses the lane and retries until
    # an operator fixes it; "exit" stops Weir instead (for platforms that page on restarts).
    on_stall: Literal["stall", "exit"] = "stall"
    stall_retry_max_s: Annotated[float, Field(gt=0)] = 10.0
    # Start-up waits for a server that does not answer yet, retrying at most this far apart.
    start_retry_max_s: Annotated[float, Field(gt=0)] = 10.0
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: Path | None = None
    sslcert: Path | None = None
    sslkey: Path | None = None
    partition_maintenance_s: Annotated[float, Field(gt=0)] = 600.0

    _ids = field_validator("schema_name", "offsets_table", "dead_letter_table")(
        check_identifier
    )

    @field_validator("dsn")
    @classmethod
    def _dsn_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (a libpq connection URI)")
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> PostgresSettings:
        if self.sslmode in ("verify-ca", "verify-full") and self.sslrootcert is None:
            raise ValueError(
                f"postgres.sslrootcert is required with sslmode {self.sslmode}: the CA that "
                "signed the server's certificate"
            )
        for name in ("sslrootcert", "sslcert", "sslkey", "password_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"postgres.{name}: {str(path)!r} is not a readable file")
        return self

    def resolved_password(self) -> str | None:
        """The password from ``password`` or ``password_file``; never logged."""
        return read_secret(self.password, self.password_file)


class BatchSettings(_Section):
    """When a writer lane flushes: whichever bound is reached first."""

    max_rows: PositiveInt = 5000
    max_bytes: PositiveInt = 8 * MiB
    # 50 against 100: p99 at half load about 50 ms lower in alternated runs, and a backlog
    # fills its batches to max_rows long before either (docs/performance.md).
    linger_ms: PositiveInt = 50


class PipelineSettings(_Section):
    """Parallelism and bounds of the stages between Kafka and PostgreSQL."""

    lanes: Annotated[int, Field(ge=1, le=64)] = 4
    lane_capacity_rows: PositiveInt | None = None
    lane_capacity_bytes: PositiveInt | None = None
    resume_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5
    decode_queue_fetches: PositiveInt = 2
    max_message_bytes: PositiveInt = 1 * MiB
    max_json_depth: PositiveInt = 64
    max_string_length: PositiveInt = 65_536
    max_array_length: PositiveInt = 10_000
    max_object_fields: PositiveInt = 1_000
    # The columnar path (processor/decode/columnar.py) for the event types it can take;
    # false: every event through the row path.
    columnar: bool = True
    rebalance_drain_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    shutdown_timeout_s: Annotated[float, Field(gt=0)] = 30.0


# Partitions are <table>_p<YYYYMMDD> and <table>_default, functions <table>_add_partition:
# the longest suffix (14) must still fit in 63 characters.
MAX_PARTITIONED_TABLE_NAME = 48


class PartitioningSettings(_Section):
    """How a target table is range-partitioned on ``event_time``, and how long it keeps rows."""

    interval: Literal["day", "week", "month", "none"] | None = None
    premake: Annotated[int, Field(ge=0, le=366)] = 3
    retention_days: PositiveInt | None = None


class RollupSettings(_Section):
    """A per-bucket aggregate of a table, kept exactly once with its rows."""

    table: str
    bucket: Literal["minute", "hour", "day"] = "minute"
    count_column: str = "events"
    sums: list[str] = Field(default_factory=list)

    _ids = field_validator("table", "count_column")(check_identifier)
    _sum_ids = field_validator("sums")(check_identifiers)

    @model_validator(mode="after")
    def _distinct_columns(self) -> RollupSettings:
        names = [self.bucket, self.count_column, *self.sums]
        if len(set(names)) != len(names):
            raise ValueError(f"columns {names} must be distinct (the bucket column is named "
                             "after the bucket)")
        return self


class IndexSettings(_Section):
    """An index analysts need on a target table, beyond the key and ``event_time``."""

    columns: Annotated[list[str], Field(min_length=1)]
    method: Literal["btree", "brin", "hash", "gin"] = "btree"

    _column_ids = field_validator("columns")(check_identifiers)

    @model_validator(mode="after")
    def _hash_takes_one_column(self) -> IndexSettings:
        if self.method == "hash" and len(self.columns) > 1:
            raise ValueError("a hash index covers exactly one column")
        return self


class MappedColumnSettings(_Section):
    """A typed column from a path into the event, or from the record itself: its key, a
    header, its topic or its timestamp (``docs/analysts.md``)."""

    name: str
    # Where the value comes from: the event (by ``path``), the Kafka key (its text or bytes,
    # or by ``path`` into a JSON key), a ``header``, the record's topic or its timestamp.
    source: Literal["event", "key", "header", "topic", "timestamp"] = "event"
    path: str | None = None  # keys and [indexes]: shipping.address.country, items[0].sku
    header: str | None = None  # the header's name (the last one of that name)
    type: Literal["text", "bigint", "integer", "numeric", "double precision", "boolean",
                  "timestamptz", "date", "uuid", "jsonb", "bytea", "text[]", "bigint[]",
                  "numeric[]", "uuid[]", "timestamptz[]"]
    # The value when the path finds nothing (or null): converted like a found value.
    default: Any = None
    # timestamptz from a number: the epoch's unit. Without it, an RFC 3339 string.
    time_unit: Literal["seconds", "milliseconds", "microseconds", "nanoseconds"] | None = None
    # timestamptz from a string without an offset: the IANA zone it is in (default UTC).
    time_zone: str | None = None

    _name = field_validator("name")(check_identifier)

    @field_validator("path")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_path(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)")\
                    from None
        return value

    @model_validator(mode="after")
    def _time_options_need_a_time(self) -> MappedColumnSettings:
        if (self.time_unit or self.time_zone) and self.type not in ("timestamptz",
                                                                      "timestamptz[]"):
            raise ValueError("time_unit and time_zone are for a column of type timestamptz "
                             "(or timestamptz[])")
        if self.time_unit and self.time_zone:
            raise ValueError("time_unit reads a number (an instant, no zone); time_zone reads "
                             "a string without an offset: set one")
        return self

    @model_validator(mode="after")
    def _source_fits(self) -> MappedColumnSettings:
        where = f"source {self.source}"
        if self.source == "event" and self.path is None:
            raise ValueError("a column from the event needs a path")
        if self.source not in ("event", "key") and self.path is not None:
            raise ValueError(f"{where} has no path (a path reads the event or a JSON key)")
        if (self.source == "header") != (self.header is not None):
            raise ValueError("header names the header of a column with source header, and "
                             "only there")
        if self.type == "bytea" and (self.source not in ("key", "header") or self.path):
            raise ValueError("bytea holds a key's or a header's bytes as they are: source key "
                             "or header, no path")
        if self.source == "topic" and self.type != "text":
            raise ValueError("a column of the topic is text")
        if self.source == "timestamp" and (self.type != "timestamptz" or self.time_unit
                                           or self.time_zone):
            raise ValueError("a column of the record's timestamp is timestamptz, with no "
                             "time_unit or time_zone")
        return self

    @property
    def steps(self) -> tuple[str | int, ...]:
        """The path's steps: keys, and indexes into arrays (none without a path)."""
        return parse_path(self.path) if self.path is not None else ()


def declared_once(columns: list[MappedColumnSettings], what: str
                  ) -> list[MappedColumnSettings]:
    """``columns``, if none of their names is declared twice; else raise naming those."""
    names = [c.name for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{what} {twice} are declared more than once")
    return columns


class ChildTableSettings(_Section):
    """An array of the event exploded into a table of its own, one row per item
    (``docs/analysts.md``): the parent's key, the item's position and the item's columns."""

    table: str
    path: str  # the array in the event: items, order.lines
    # More items than this: the event is a dead letter (a runaway array must not flood the
    # child table, nor one transaction).
    max_items: Annotated[int, Field(gt=0, le=100_000)] = 1000
    index_column: str = "item_index"  # the item's position in its array, from 0
    # Each a path into the item (source event, the default); an item that is not an object
    # takes the path ``.`` for itself.
    columns: Annotated[list[MappedColumnSettings], Field(min_length=1)]
    rollups: list[RollupSettings] = Field(default_factory=list)
    indexes: list[IndexSettings] = Field(default_factory=list)

    _ids = field_validator("table", "index_column")(check_identifier)

    @field_validator("path")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_path(value)
        return value

    @field_validator("columns")
    @classmethod
    def _from_the_item(cls, value: list[MappedColumnSettings]) -> list[MappedColumnSettings]:
        declared_once(value, "columns")
        for column in value:
            if column.source != "event":
                raise ValueError(f"column {column.name}: a child table's columns come from "
                                 "its item (source event, the default)")
        return value


class DeadLetterSettings(_Section):
    """Where dead letters go, in order: a Kafka topic, the PostgreSQL table, a local spool."""

    topic_enabled: bool = False
    topic_template: str = "{topic}.dlq"
    topic_partitions: PositiveInt | None = None
    topic_replication_factor: PositiveInt = 1
    topic_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    topic_retry_s: Annotated[float, Field(gt=0)] = 30.0
    spool_dir: Path = Path("spool")
    spool_drain_interval_s: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("topic_template")
    @classmethod
    def _names_the_topic(cls, value: str) -> str:
        if "{topic}" not in value:
            raise ValueError("must contain {topic}, the source topic's name")
        try:
            value.format(topic="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{topic}} may be substituted ({exc})") from None
        return value

    def topic_for(self, source: str) -> str:
        """The dead-letter topic of the source topic ``source``."""
        return self.topic_template.format(topic=source)


class SchemaRegistrySettings(_Section):
    """The Confluent-compatible Schema Registry that framed formats take their schemas from.

    Apicurio's compatible API is under ``/apis/ccompat/v7``; Confluent's is the root. One of
    basic auth (``username`` and a password) or a bearer token, or neither.
    """

    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Parsed schemas kept by id; an id's schema never changes, so only memory bounds it.
    cache_size: PositiveInt = 1000

    @model_validator(mode="after")
    def _complete(self) -> SchemaRegistrySettings:
        if self.url is not None and not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"schema_registry.url: {self.url!r} is not an http(s) URL")
        basic = self.password is not None or self.password_file is not None
        bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if basic and not self.username:
            raise ValueError("schema_registry.username is required with a password")
        if basic and bearer:
            raise ValueError("schema_registry: set basic auth (username and password) or a "
                             "bearer token, not both")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("schema_registry.ssl_certfile and ssl_keyfile go together")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "password_file",
                     "bearer_token_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"schema_registry.{name}: {str(path)!r} is not a readable file")
        return self

    def resolved_password(self) -> str | None:
        """The basic-auth password from ``password`` or ``password_file``; never logged."""
        return read_secret(self.password, self.password_file)

    def resolved_bearer_token(self) -> str | None:
        """The bearer token from ``bearer_token`` or ``bearer_token_file``; never logged."""
        return read_secret(self.bearer_token, self.bearer_token_file)


# How a topic's record values are encoded. The framed ones carry a Schema Registry id.
Format = Literal["json", "avro", "protobuf", "jsonschema"]
FRAMED_FORMATS = frozenset({"avro", "protobuf", "jsonschema"})


class EventTypeSettings(_Section):
    """One event type: its contract, its table and its transforms."""

    # The contract: a JSON Schema file, a subject of the schema registry, or the JSON
    # Schema itself (a mirror's, as ``cdc.mirrors`` derives it).
    schema_file: Path | None = None
    contract: dict[str, Any] | None = None
    registry_subject: str | None = None
    registry_version: Annotated[int, Field(gt=0)] | Literal["latest"] = "latest"
    # Protobuf: the message of the subject's file that is the event (default: the first).
    registry_message: str | None = None
    table: str
    id_field: str | None = None
    time_field: str | None = None
    key_field: str | None = None
    transforms: list[str] = Field(default_factory=list)
    write_mode: Literal["insert", "upsert"] = "insert"
    upsert_key: list[str] = Field(default_factory=list)
    # An upsert's update: replace the row with the newer event, or merge, where a field the
    # newer event has not (or has as null) keeps its stored value.
    update_mode: Literal["replace", "merge"] = "replace"
    # The field that orders an upsert key's versions (an event time or a version number):
    # the row keeps the highest, ties broken by Kafka offset.
    version_field: str | None = None
    # What a tombstone (a key with no value) does; default: delete for an upsert table keyed
    # by the Kafka key, a dead letter otherwise.
    tombstones: Literal["delete", "dead_letter", "ignore"] | None = None
    partitioning: PartitioningSettings = PartitioningSettings()
    rollups: list[RollupSettings] = Field(default_factory=list)
    indexes: list[IndexSettings] = Field(default_factory=list)
    # Typed columns from paths into the event, after the contract's own columns.
    columns: list[MappedColumnSettings] = Field(default_factory=list)
    # Arrays of the event as child tables (line items), written with the event's row.
    children: list[ChildTableSettings] = Field(default_factory=list)
    # The events are Debezium change events: each an upsert or a delete of its row (cdc.md).
    envelope: Literal["none", "debezium"] = "none"
    # A mirror's: what a delete does (delete the row, or keep it with deleted_at set), and
    # what a truncate of the source table does (nothing, empty the mirror, or stall it).
    deletes: Literal["delete", "soft"] = "delete"
    truncates: Literal["ignore", "truncate", "stall"] = "stall"

    @property
    def keyed_by_kafka_key(self) -> bool:
        """Is the upsert key the Kafka key: ``[key_field]``, a mapped column of the whole key
        (``source: key``, no path), or, for several columns with no ``key_field``, a Kafka
        key that is the JSON object of those fields?"""
        whole_key = {c.name for c in self.columns if c.source == "key" and c.path is None}
        return self.upsert_key == [self.key_field] or (
            len(self.upsert_key) == 1 and self.upsert_key[0] in whole_key) or (
            self.key_field is None and len(self.upsert_key) > 1)

    @property
    def tombstone_mode(self) -> str:
        """What a tombstone does: the setting, or its default for this table (a Debezium
        table's: ignored, for its deletes are change events of their own)."""
        if self.tombstones is not None:
            return self.tombstones
        if self.envelope == "debezium":
            return "ignore"
        keyed = self.write_mode == "upsert" and self.version_field is None
        return "delete" if keyed else "dead_letter"

    @property
    def interval(self) -> str:
        """The partition interval in force: daily unless set, none for upsert tables."""
        if self.partitioning.interval is not None:
            return self.partitioning.interval
        return "none" if self.write_mode == "upsert" else "day"

    @model_validator(mode="after")
    def _one_contract(self) -> EventTypeSettings:
        given = [self.schema_file, self.registry_subject, self.contract]
        if sum(x is not None for x in given) != 1:
            raise ValueError("set exactly one of schema_file (a JSON Schema file), "
                             "registry_subject (a subject of the schema registry) or contract "
                             "(the JSON Schema itself)")
        return self

    @model_validator(mode="after")
    def _partitioning_fits(self) -> EventTypeSettings:
        if self.write_mode == "upsert" and self.interval != "none":
            raise ValueError(
                "partitioning.interval must be none with write_mode upsert: a partitioned "
                "table's unique key must include event_time, so one business key could "
                "hold one row per partition instead of one row"
            )
        if self.write_mode == "upsert" and (self.rollups or any(c.rollups
                                                                for c in self.children)):
            raise ValueError("rollups count inserted events; an upsert table replaces them")
        if self.interval == "none" and self.partitioning.retention_days is not None:
            raise ValueError("partitioning.retention_days drops partitions: it needs an interval")
        long = [t for t in (self.table, *(c.table for c in self.children))
                if len(t) > MAX_PARTITIONED_TABLE_NAME]
        if self.interval != "none" and long:
            raise ValueError(f"table: a partitioned table's name (and its child tables') is "
                             f"at most {MAX_PARTITIONED_TABLE_NAME} characters (its partitions "
                             f"add a suffix): {long}")
        return self

    @model_validator(mode="after")
    def _upsert_needs_a_key(self) -> EventTypeSettings:
        if self.write_mode == "upsert" and not self.upsert_key:
            raise ValueError("upsert_key is required with write_mode upsert: the business "
                             "key whose latest event the row holds")
        if self.write_mode == "insert" and self.upsert_key:
            raise ValueError("upsert_key is only used with write_mode upsert")
        if self.tombstones == "delete" and (self.write_mode != "upsert" or self.version_field):
            raise ValueError(
                "tombstones: delete needs write_mode upsert keyed by the Kafka key (no "
                "version_field): a tombstone names a key by its Kafka key and carries no "
                "version to order it by")
        if self.write_mode == "insert" and self.version_field:
            raise ValueError("version_field is only used with write_mode upsert")
        if self.write_mode == "insert" and self.update_mode != "replace":
            raise ValueError("update_mode is only used with write_mode upsert")
        if self.write_mode == "upsert" and self.version_field is None \
                and not self.keyed_by_kafka_key:
            raise ValueError(
                f"version_field is required: upsert_key {self.upsert_key} is not the Kafka "
                f"key (key_field {self.key_field!r}), so the versions of one key can arrive "
                "on several partitions, whose offsets do not order them, and an older one "
                "could overwrite a newer row; name the field that orders them (an event "
                "time or a version number)")
        return self

    @model_validator(mode="after")
    def _debezium_mirrors(self) -> EventTypeSettings:
        if self.envelope != "debezium":
            mirror_only = {"deletes", "truncates"} & self.model_fields_set
            if mirror_only:
                raise ValueError(f"{' and '.join(sorted(mirror_only))}: only for envelope "
                                 "debezium (a mirror's deletes and truncates)")
            return self
        if self.time_field is not None:
            raise ValueError("envelope debezium: no time_field; a mirror's event_time is the "
                             "change's commit time at the source (source.ts_ms)")
        if self.truncates == "truncate" and self.children:
            raise ValueError("truncates: truncate does not empty child tables yet; use stall "
                             "or ignore for a mirror with children")
        if self.write_mode != "upsert" or not self.keyed_by_kafka_key or self.version_field:
            raise ValueError(
                "envelope debezium mirrors a table: write_mode upsert, upsert_key its primary "
                "key, keyed by the Kafka key as Debezium keys each change ([key_field] for one "
                "column, no key_field for several), no version_field (the offset orders the "
                "changes of a key)")
        if self.tombstones not in (None, "ignore"):
            raise ValueError("envelope debezium ignores tombstones: a delete is a change "
                             "event of its own (op d)")
        return self

    _table = field_validator("table")(check_identifier)

    @field_validator("columns")
    @classmethod
    def _mapped_once(cls, value: list[MappedColumnSettings]) -> list[MappedColumnSettings]:
        return declared_once(value, "mapped columns")

    @field_validator("transforms")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", ref):
                raise ValueError(f"{ref!r} must look like 'package.module:function'")
        return value


class TopicSettings(_Section):
    """A source topic and how its events map to event types."""

    name: str
    event_type: str | None = None
    type_field: str | None = None
    format: Format = "json"
    # The registry subject whose schemas this topic's values must be registered under
    # (Confluent's default naming, TopicNameStrategy: "<topic>-value"). An id of another
    # subject is a dead letter: it names some other stream's schema.
    subject: str | None = None

    @property
    def value_subject(self) -> str:
        """The subject the topic's value schemas are registered under."""
        return self.subject or f"{self.name}-value"

    @model_validator(mode="after")
    def _one_routing(self) -> TopicSettings:
        if (self.event_type is None) == (self.type_field is None):
            raise ValueError(
                f"topic {self.name!r}: set exactly one of event_type (all events of one "
                "type) or type_field (the event field that names its type)"
            )
        return self


# What a mirror's table name may take from its change topic's name (Debezium's
# ``prefix.schema.table``, MySQL's ``prefix.database.table``).
TOPIC_PARTS = ("topic", "prefix", "schema", "table")


class MirrorSettings(_Section):
    """Change topics matched by a pattern, each mirrored into a table of its own
    (``docs/cdc.md``, Many tables)."""

    # A regular expression a whole topic name must match (Python's re.fullmatch).
    topics: str
    # The mirror's table name, from the topic's name: {topic}, {prefix}, {schema}, {table}.
    table: str = "{table}"
    # How the change events' values are written: Kafka Connect's JSON converter with its
    # embedded schema, or an Avro converter through the schema registry (Confluent's
    # framing, each topic's envelope under <topic>-value).
    format: Literal["json", "avro"] = "json"
    deletes: Literal["delete", "soft"] = "delete"
    truncates: Literal["ignore", "truncate", "stall"] = "stall"

    @field_validator("topics")
    @classmethod
    def _a_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("table")
    @classmethod
    def _a_template(cls, value: str) -> str:
        try:
            value.format(**dict.fromkeys(TOPIC_PARTS, "t"))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r}: only {{topic}}, {{prefix}}, {{schema}} and "
                             f"{{table}} may be substituted ({exc})") from None
        return value

    def matches(self, topic: str) -> bool:
        """Does ``topic`` match the pattern, as a whole?"""
        return re.fullmatch(self.topics, topic) is not None

    def table_for(self, topic: str) -> str:
        """The mirror's table name for ``topic``, in lower case (as PostgreSQL folds an
        unquoted name); not checked as an identifier here."""
        prefix, _, rest = topic.rpartition(".")
        prefix, _, schema = prefix.rpartition(".")
        return self.table.format(topic=topic, prefix=prefix, schema=schema,
                                 table=rest).lower().replace(".", "_").replace("-", "_")


class CdcSettings(_Section):
    """Mirrors of change topics found by pattern, and how often new ones are looked for."""

    mirrors: list[MirrorSettings] = Field(default_factory=list)
    refresh_s: Annotated[float, Field(gt=0)] = 30.0


class MetricsSettings(_Section):
    """The Prometheus endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9108
    lag_interval_s: Annotated[float, Field(gt=0)] = 5.0


class WorkersSettings(_Section):
    """How ``weir run --workers N`` keeps its worker processes: restarts and when to give up."""

    restart_backoff_s: Annotated[float, Field(gt=0)] = 1.0
    restart_backoff_max_s: Annotated[float, Field(gt=0)] = 30.0
    # More restarts than this inside the window means a crash loop: stop, exit non-zero.
    max_restarts: Annotated[int, Field(ge=0)] = 5
    restart_window_s: Annotated[float, Field(gt=0)] = 120.0


class LoggingSettings(_Section):
    """Log level and format; ``auto`` is console on a terminal, JSON otherwise."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    repeat_window_s: Annotated[float, Field(ge=0)] = 10.0


class Settings(BaseSettings):
    """Everything Weir can be told. Built once by :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="WEIR_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    batch: BatchSettings = BatchSettings()
    pipeline: PipelineSettings = PipelineSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    metrics: MetricsSettings = MetricsSettings()
    workers: WorkersSettings = WorkersSettings()
    logging: LoggingSettings = LoggingSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    cdc: CdcSettings = CdcSettings()
    event_types: dict[str, EventTypeSettings] = Field(default_factory=dict)
    topics: list[TopicSettings] = Field(default_factory=list)
    config_dir: Path = Path()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the YAML file (passed as init values)."""
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems: list[str] = []
        if not self.topics and not self.cdc.mirrors:
            problems.append("topics: at least one source topic (or a pattern under "
                            "cdc.mirrors) is required")
        problems += [
            f"topics: topic {topic.name!r} names event_type {topic.event_type!r}, "
            f"which is not under event_types (known: {sorted(self.event_types)})"
            for topic in self.topics
            if topic.event_type is not None and topic.event_type not in self.event_types
        ]
        problems += self._table_problems()
        framed = [t.name for t in self.topics if t.format in FRAMED_FORMATS]
        framed += [f"event_types.{n}.registry_subject" for n, et in self.event_types.items()
                   if et.registry_subject is not None]
        framed += [f"cdc.mirrors[{i}] ({m.topics!r}, format avro)"
                   for i, m in enumerate(self.cdc.mirrors) if m.format == "avro"]
        if framed and self.schema_registry.url is None:
            problems.append(f"schema_registry.url is required: {framed} use the schema "
                            "registry")
        problems += [
            f"topics: topic {t.name!r} is {t.format}: its event type comes from the topic "
            "(event_type), not from a field of the event (type_field)"
            for t in self.topics if t.format in FRAMED_FORMATS and t.type_field is not None]
        problems += [
            f"topics: topic {t.name!r} carries Debezium change events: its event type is "
            "named by the topic (event_type), in JSON (format json) or in Avro (format avro, "
            "the event type's contract its registry_subject)"
            for t in self.topics if t.event_type in self.debezium_types and not (
                t.format == "json" or (t.format == "avro"
                and self.event_types[t.event_type].registry_subject is not None))]
        problems += [
            f"topics: topic {t.name!r} routes by a field (type_field), and no Debezium change "
            "event names its type: give it an event_type"
            for t in self.topics if t.type_field is not None and self.debezium_types]
        if self.postgres.pool_size < self.pipeline.lanes:
            problems.append(
                f"postgres.pool_size: {self.postgres.pool_size} is less than pipeline.lanes "
                f"({self.pipeline.lanes}); each lane needs its own connection while it writes"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _table_problems(self) -> list[str]:
        """Every table the configuration names (targets, rollups, children) is distinct and
        none is Weir's own."""
        problems: list[str] = []
        tables = [et.table for et in self.event_types.values()]
        tables += [r.table for et in self.event_types.values() for r in et.rollups]
        tables += [t for et in self.event_types.values() for c in et.children
                   for t in (c.table, *(r.table for r in c.rollups))]
        reserved = {self.postgres.offsets_table, self.postgres.dead_letter_table}
        for name, et in self.event_types.items():
            if et.table in reserved:
                problems.append(f"event_types.{name}.table: {et.table!r} is Weir's own table")
            if tables.count(et.table) > 1:
                problems.append(f"event_types.{name}.table: {et.table!r} is used twice")
            for i, rollup in enumerate(et.rollups):
                where = f"event_types.{name}.rollups.{i}.table"
                if rollup.table in reserved:
                    problems.append(f"{where}: {rollup.table!r} is Weir's own table")
                if tables.count(rollup.table) > 1:
                    problems.append(f"{where}: {rollup.table!r} is used twice")
            for i, child in enumerate(et.children):
                for table in (child.table, *(r.table for r in child.rollups)):
                    where = f"event_types.{name}.children.{i}"
                    if table in reserved:
                        problems.append(f"{where}: {table!r} is Weir's own table")
                    if tables.count(table) > 1:
                        problems.append(f"{where}: {table!r} is used twice")
        return problems

    @property
    def debezium_types(self) -> frozenset[str]:
        """The event types whose events are Debezium change events."""
        return frozenset(n for n, et in self.event_types.items() if et.envelope == "debezium")

    @property
    def lane_capacity_rows(self) -> int:
        """Rows a lane may hold before its partitions pause: two full batches by default."""
        return self.pipeline.lane_capacity_rows or 2 * self.batch.max_rows

    @property
    def lane_capacity_bytes(self) -> int:
        """Bytes a lane may hold before its partitions pause: two full batches by default."""
        return self.pipeline.lane_capacity_bytes or 2 * self.batch.max_bytes

    @property
    def lane_hard_limit_rows(self) -> int:
        """Capacity plus what can still arrive after a pause: the queued and current fetches."""
        in_flight = (self.pipeline.decode_queue_fetches + 1) * self.kafka.fetch_max_records
        return self.lane_capacity_rows + in_flight

    @property
    def lane_hard_limit_bytes(self) -> int:
        """Byte counterpart of :attr:`lane_hard_limit_rows`."""
        in_flight = (self.pipeline.decode_queue_fetches + 1) * self.kafka.fetch_max_bytes
        return self.lane_capacity_bytes + in_flight

    def schema_path(self, event_type: str) -> Path:
        """The event type's schema file, relative paths taken from the config file's folder."""
        path = self.event_types[event_type].schema_file
        if path is None:
            raise ValueError(f"event type {event_type!r} has no schema file: its contract "
                             "comes from the registry, or is given inline")
        return path if path.is_absolute() else self.config_dir / path


def _format_error(err: Any) -> str:
    loc = ".".join(str(part) for part in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    where = f"{loc}: " if loc else ""
    return f"{where}{msg}"


def load_settings(path: Path | str) -> Settings:
    """Read, merge and validate the configuration; raise :class:`ConfigError` naming each fault."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} does not exist"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"config file {str(path)!r} is not valid YAML: {exc}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"config file {str(path)!r} must hold a mapping at the top level"])
    raw.setdefault("config_dir", str(path.resolve().parent))
    try:
        return Settings(**raw)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            problems.extend(_format_error(err).splitlines())
        raise ConfigError(problems) from None
