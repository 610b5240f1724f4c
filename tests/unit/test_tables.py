from pathlib import Path

import pytest

from processor.contracts import ContractError, column_type, load_contracts
from processor.settings import load_settings
from processor.sink.tables import offsets_ddl, table_spec, target_ddl


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
    create, index = target_ddl(contract, spec)
    assert spec.key == ("event_id",)
    assert create.startswith('CREATE TABLE IF NOT EXISTS "weir_example"."orders"')
    assert '"event_id" uuid NOT NULL' in create
    assert '"amount" numeric NOT NULL' in create
    assert '"items" jsonb NOT NULL' in create
    assert '"occurred_at" timestamptz NOT NULL' in create
    assert '"channel" text,' in create  # optional: nullable
    for meta in ("event_time", "kafka_topic", "kafka_partition", "kafka_offset", "raw"):
        assert f'"{meta}"' in create
    assert 'PRIMARY KEY ("event_id")' in create
    assert "(event_time)" in index
    assert spec.columns[-6:] == (
        "event_time", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "raw"
    )
    assert 'ON CONFLICT ("event_id") DO NOTHING' in spec.insert_sql()


def test_without_id_field_the_kafka_coordinates_are_the_key(
    example_config: Path, tmp_path: Path
) -> None:
    text = example_config.read_text().replace("    id_field: event_id\n", "", 1)
    text = text.replace("../schemas", str(example_config.parent.parent / "schemas"))
    config = tmp_path / "c.yaml"
    config.write_text(text)
    settings = load_settings(config)
    spec = table_spec(load_contracts(settings)["order"], settings)
    assert spec.key == ("kafka_topic", "kafka_partition", "kafka_offset")


def test_offsets_table_has_a_row_per_writer(example_config: Path) -> None:
    ddl = offsets_ddl(load_settings(example_config))[0]
    assert "PRIMARY KEY (consumer_group, topic, partition, writer)" in ddl
