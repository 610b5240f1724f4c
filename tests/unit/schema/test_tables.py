from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from processor.contracts import ContractError, column_type, load_contracts
from processor.core.errors import ConfigError
from processor.core.offsets import OffsetStore
from processor.core.pgtime import micros
from processor.core.settings import load_settings
from processor.schema.partitions import add_partition_sql, bucket, drop_expired_sql
from processor.schema.rollups import RollupSpec, with_rollups
from processor.schema.tables import (
    index_ddl,
    partition_function_ddl,
    table_spec,
    target_ddl,
)
from processor.sink.partitions import PartitionGuard


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"type": "string"}, ("text", False)),
        ({"type": "string", "format": "date-time"}, ("timestamptz", False)),
        ({"type": "string", "format": "uuid"}, ("uuid", False)),
        ({"type": "string", "format": "date"}, ("date", False)),
        ({"type": "integer"}, ("bigint", False)),
        ({"type": "number"}, ("numeric", False)),
        ({"type": "boolean"}, ("boolean", False)),
        ({"type": "object"}, ("jsonb", False)),
        ({"type": "array"}, ("jsonb", False)),
        ({"type": ["integer", "null"]}, ("bigint", True)),
        ({"type": ["integer", "string"]}, ("jsonb", False)),
        ({}, ("jsonb", False)),
        ({"type": "number", "x-weir-column-type": "double precision"},
         ("double precision", False)),
    ],
)
def test_column_types(prop: dict[str, object], expected: tuple[str, bool]) -> None:
    assert column_type(prop) == expected


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ContractError, match="x-weir-column-type"):
        column_type({"type": "string", "x-weir-column-type": "text; drop table x"})


def test_orders_table_shape(example_config: Path) -> None:
    settings = load_settings(example_config)
    contract = load_contracts(settings)["order"]
    spec = table_spec(contract, settings)
    create, index, default, comment, customer, country, tags, *children = target_ddl(
        contract, spec)
    assert '"tags" text[]' in create  # x-weir-column-type
    assert tags.endswith('USING gin ("tags")')
    assert '"ship_country" text' in create  # a mapped column
    assert country.endswith('USING btree ("ship_country", "event_time")')
    assert children[0].startswith('CREATE TABLE IF NOT EXISTS "weir_example"."order_items"')
    # Partitioned by day: the unique key holds the partition key.
    assert spec.key == ("event_id", "event_time")
    assert create.endswith(") PARTITION BY RANGE (event_time)")
    assert default == ('CREATE TABLE IF NOT EXISTS "weir_example"."orders_default" '
                       'PARTITION OF "weir_example"."orders" DEFAULT')
    assert comment.endswith("IS 'weir: partitioned by day'")
    assert create.startswith('CREATE TABLE IF NOT EXISTS "weir_example"."orders"')
    assert '"event_id" uuid NOT NULL' in create
    assert '"amount" numeric NOT NULL' in create
    assert '"items" jsonb NOT NULL' in create
    assert '"occurred_at" timestamptz NOT NULL' in create
    assert '"channel" text,' in create  # optional: nullable
    for meta in ("event_time", "kafka_topic", "kafka_partition", "kafka_offset", "raw"):
        assert f'"{meta}"' in create
    assert 'PRIMARY KEY ("event_id", "event_time")' in create
    assert "(event_time)" in index
    # Declared in config: what the analysts' per-customer queries need.
    assert customer == ('CREATE INDEX IF NOT EXISTS "orders_customer_id_event_time_btree_idx" '
                        'ON "weir_example"."orders" USING btree ("customer_id", "event_time")')
    assert spec.columns[-6:] == (
        "event_time", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "raw"
    )
    assert 'ON CONFLICT ("event_id", "event_time") DO NOTHING' in spec.insert_sql()


def test_without_id_field_the_kafka_coordinates_are_the_key(
    example_config: Path, tmp_path: Path
) -> None:
    text = example_config.read_text().replace("    id_field: event_id\n", "", 1)
    text = text.replace("../schemas", str(example_config.parent.parent / "schemas"))
    config = tmp_path / "c.yaml"
    config.write_text(text)
    settings = load_settings(config)
    spec = table_spec(load_contracts(settings)["order"], settings)
    assert spec.key == ("kafka_topic", "kafka_partition", "kafka_offset", "event_time")


def test_offsets_table_has_a_row_per_writer(example_config: Path) -> None:
    ddl = OffsetStore(load_settings(example_config)).ddl()[0]
    assert "PRIMARY KEY (consumer_group, topic, partition, writer)" in ddl


def _config(example_config: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = example_config.read_text()
    assert old in text
    text = text.replace(old, new, 1).replace(
        "../schemas", str(example_config.parent.parent / "schemas"))
    config = tmp_path / "c.yaml"
    config.write_text(text)
    return config


def test_unpartitioned_table_keeps_its_plain_key(example_config: Path, tmp_path: Path) -> None:
    config = _config(example_config, tmp_path, "interval: day\n      premake: 3\n"
                     "      retention_days: 400", "interval: none")
    settings = load_settings(config)
    contract = load_contracts(settings)["order"]
    spec = table_spec(contract, settings)
    assert spec.key == ("event_id",)
    assert not spec.partitioned
    ddl = target_ddl(contract, spec)
    assert len(ddl) == 7  # table, event_time index, 3 declared indexes, the child and its index
    assert "PARTITION BY" not in ddl[5]  # nor its child
    assert "PARTITION BY" not in ddl[0]
    assert partition_function_ddl(spec) == []


def test_partition_functions_are_security_definer_and_not_public(example_config: Path) -> None:
    settings = load_settings(example_config)
    spec = table_spec(load_contracts(settings)["order"], settings)
    add, drop, revoke_add, revoke_drop = partition_function_ddl(spec)
    assert add.startswith(
        'CREATE OR REPLACE FUNCTION "weir_example"."orders_add_partition"(at timestamptz)')
    for fn in (add, drop):
        assert "SECURITY DEFINER" in fn
        assert "SET search_path = pg_catalog, pg_temp" in fn
        assert "SET TimeZone = 'UTC'" in fn
    assert "date_trunc('day', at)" in add
    assert "interval '1 day'" in add
    assert "now() - interval '400 days'" in add  # past retention: the default partition
    assert "now() - interval '400 days'" in drop
    assert "DROP TABLE %I.%I" in drop
    assert "'orders_default'" in drop
    assert revoke_add.endswith('"orders_add_partition"(timestamptz) FROM PUBLIC')
    assert revoke_drop.endswith('"orders_drop_expired"() FROM PUBLIC')


def test_without_retention_nothing_is_dropped() -> None:
    sql = drop_expired_sql("s", "t", None)
    assert "RETURN 0" in sql
    assert "DROP TABLE" not in sql
    assert "cutoff timestamptz := NULL" in add_partition_sql("s", "t", "month", None)


@pytest.mark.parametrize(
    ("at", "interval", "expected"),
    [
        (datetime(2026, 11, 26, 23, 59, tzinfo=UTC), "day", date(2026, 11, 26)),
        # 00:30 in UTC+2 is still the previous day in UTC: partitions are UTC days.
        (datetime(2026, 11, 27, 0, 30, tzinfo=timezone(timedelta(hours=2))), "day",
         date(2026, 11, 26)),
        (datetime(2026, 11, 26, 12, tzinfo=UTC), "week", date(2026, 11, 23)),  # a Monday
        (datetime(2026, 11, 26, 12, tzinfo=UTC), "month", date(2026, 11, 1)),
    ],
)
def test_bucket_matches_date_trunc_in_utc(at: datetime, interval: str, expected: date) -> None:
    assert bucket(at, interval) == expected


def test_guard_asks_only_for_ranges_it_has_not_seen(example_config: Path) -> None:
    settings = load_settings(example_config)
    spec = table_spec(load_contracts(settings)["order"], settings)
    guard = PartitionGuard({"order": spec})
    i = spec.time_index
    row = [None] * len(spec.columns)

    def at(day: int) -> tuple[object, ...]:
        values = list(row)
        values[i] = micros(datetime(2026, 11, day, 12, tzinfo=UTC))  # as the decoder's rows
        return tuple(values)

    assert guard.missing("order", [at(26), at(24), at(26)]) == {date(2026, 11, 24),
                                                                date(2026, 11, 26)}
    guard._known["order"] |= {date(2026, 11, 24), date(2026, 11, 26)}
    assert guard.missing("order", [at(26), at(26)]) == set()
    assert guard.missing("order", [at(24), at(25), at(26)]) == {date(2026, 11, 25)}
    assert guard.missing("page_view", [at(1)]) == set()  # not partitioned by this guard


def test_upsert_tables_may_not_be_partitioned(example_config: Path, tmp_path: Path) -> None:
    config = _config(example_config, tmp_path, "  page_view:\n", "  page_view:\n")
    text = config.read_text().replace(
        "    key_field: user_id\n",
        "    key_field: user_id\n    write_mode: upsert\n    upsert_key: [user_id]\n", 1)
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"partitioning\.interval must be none with write_mode"):
        load_settings(config)
    config.write_text(text.replace("      interval: day\n      retention_days: 30\n",
                                   "      interval: none\n"))
    settings = load_settings(config)
    assert settings.event_types["page_view"].interval == "none"


def test_rollup_rides_on_the_rows_really_inserted(example_config: Path) -> None:
    settings = load_settings(example_config)
    spec = table_spec(load_contracts(settings)["order"], settings)
    (rollup,) = spec.rollups
    assert rollup.ddl() == (
        'CREATE TABLE IF NOT EXISTS "weir_example"."orders_per_minute" (\n'
        '  "minute" timestamptz PRIMARY KEY,\n  "orders" bigint NOT NULL,\n'
        '  "amount" numeric NOT NULL\n)')
    sql = spec.insert_sql()
    assert sql.startswith('WITH inserted AS (INSERT INTO "weir_example"."orders" (')
    assert 'ON CONFLICT ("event_id", "event_time") DO NOTHING RETURNING "amount", "event_time")' \
        in sql
    assert ("SELECT date_trunc('minute', event_time, 'UTC'), count(*), "
            'coalesce(sum("amount"), 0) FROM inserted GROUP BY 1 ORDER BY 1') in sql
    assert ('ON CONFLICT ("minute") DO UPDATE SET "orders" = r."orders" + EXCLUDED."orders", '
            '"amount" = r."amount" + EXCLUDED."amount"') in sql


def test_two_rollups_are_two_statements_in_one() -> None:
    a = RollupSpec("s", "per_minute", "minute", "n", ())
    b = RollupSpec("s", "per_hour", "hour", "n", ("amount",))
    sql = with_rollups("INSERT INTO x SELECT 1", (a, b))
    assert sql.count("INSERT INTO") == 3
    assert 'rollup_0 AS (INSERT INTO "s"."per_hour"' in sql


def test_rollup_sums_must_be_numeric(example_config: Path, tmp_path: Path) -> None:
    config = _config(example_config, tmp_path, "sums: [amount]", "sums: [currency]")
    with pytest.raises(ContractError, match="'currency' is not a numeric schema property"):
        load_contracts(load_settings(config))


def test_rollup_table_names_are_checked(example_config: Path, tmp_path: Path) -> None:
    config = _config(example_config, tmp_path, "table: orders_per_minute", "table: page_views")
    with pytest.raises(ConfigError, match=r"rollups\.0\.table: .page_views. is used twice"):
        load_settings(config)


def test_declared_indexes_name_known_columns(example_config: Path, tmp_path: Path) -> None:
    config = _config(example_config, tmp_path, "columns: [customer_id, event_time]",
                     "columns: [customer, event_time]")
    with pytest.raises(ContractError, match=r"indexes.0.columns: 'customer' is neither"):
        load_contracts(load_settings(config))


def test_long_index_names_are_shortened_not_truncated(
    example_config: Path, tmp_path: Path
) -> None:
    config = _config(example_config, tmp_path, "columns: [customer_id, event_time]",
                     "columns: [customer_id, event_time, kafka_topic, kafka_partition]")
    settings = load_settings(config)
    spec = table_spec(load_contracts(settings)["order"], settings)
    ddl = index_ddl(spec)[0]
    name = ddl.split('"')[1]
    assert len(name) <= 63
    assert name.startswith("orders_")
    assert name.endswith("_idx")


@pytest.mark.parametrize("interval", ["day", "week", "month"])
@pytest.mark.parametrize("at", [
    datetime(2026, 11, 26, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 25, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2026, 11, 26, 0, 30, tzinfo=timezone(timedelta(hours=1))),  # still the 25th in UTC
    datetime(1999, 12, 31, 23, 0, tzinfo=UTC),  # before PostgreSQL's epoch: negative integer
])
def test_bucket_of_the_rows_integer_time_equals_the_datetimes(at: datetime, interval: str) -> None:
    assert bucket(micros(at), interval) == bucket(at, interval)
