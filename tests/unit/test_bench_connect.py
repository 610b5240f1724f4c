"""The Kafka Connect peer's files, checked without a JVM: envelopes, tables, properties."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from benchmarks.connect import envelope, phase
from benchmarks.env import Names
from processor.commands.produce.sample import SampleEvents

# Columns the connector fills from somewhere other than the event: the InsertField
# transform's Kafka coordinates, and the table's own default.
COORDINATES = {"kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp"}
TABLES = {"order": "orders", "page_view": "page_views"}


def columns(table: str) -> dict[str, bool]:
    """Column → NOT NULL, from ``tables.sql``."""
    sql = (phase.HERE / "tables.sql").read_text()
    body = re.search(rf"CREATE TABLE @SCHEMA@\.{table} \((.*?)\n\) PARTITION", sql, re.S)
    assert body is not None
    found = {}
    for line in body.group(1).strip().splitlines():
        name, _, rest = line.strip().partition(" ")
        if name != "PRIMARY":
            found[name] = "NOT NULL" in rest
    return found


@pytest.mark.parametrize("event_type", ["order", "page_view"])
def test_an_envelope_carries_the_same_event(event_type: str) -> None:
    sample = SampleEvents(seed=3)
    for _ in range(50):
        _, event = sample.make(event_type)
        wrapped = orjson.loads(envelope.Wrapper(event_type)(orjson.dumps(event)))
        assert wrapped["schema"] == envelope.schema(event_type)
        payload = wrapped["payload"]
        assert set(payload) == set(event)
        for name, value in event.items():
            # items is the one field that travels as text (a jsonb column from a string)
            expected = orjson.dumps(value).decode() if name == "items" else value
            assert payload[name] == expected, name


@pytest.mark.parametrize("event_type", ["order", "page_view"])
def test_the_schema_fills_every_column_of_its_table(event_type: str) -> None:
    table = columns(TABLES[event_type])
    fields = {f["field"]: f for f in envelope.schema(event_type)["fields"]}
    assert set(fields) | COORDINATES | {"ingested_at"} == set(table)
    for name, field in fields.items():
        assert field["optional"] is not table[name], name
    assert fields["occurred_at"]["name"] == "io.debezium.time.ZonedTimestamp"


def test_properties_have_every_placeholder_filled(tmp_path: Path) -> None:
    names = Names("kabc12345")
    settings = phase.Settings(tasks=2, batch_size=5000, max_poll_records=10000)
    worker, connector = phase.properties(names, settings, tmp_path)
    text = connector.read_text()
    assert "tasks.max=2\n" in text
    assert "batch.size=5000\n" in text
    assert "topics=bench.kabc12345.orders,bench.kabc12345.page_views\n" in text
    assert "collection.name.format=bench_kabc12345.${topic}\n" in text
    assert "consumer.max.poll.records=10000\n" in worker.read_text()
    assert f"offset.storage.file.filename={tmp_path}/connect.offsets\n" in worker.read_text()


def test_a_missing_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        phase.render(phase.HERE / "connector.properties.in", tmp_path / "c.properties",
                     {"NAME": "x"})


def test_the_router_keeps_the_table_part_of_the_topic() -> None:
    """RegexRouter's pattern (a Java regex, but plain enough for Python's) on our topics."""
    text = (phase.HERE / "connector.properties.in").read_text()
    regex = re.search(r"^transforms\.route\.regex=(.*)$", text, re.M)
    assert regex is not None
    pattern = regex.group(1).replace("\\\\", "\\")  # a properties file escapes backslashes
    for table in TABLES.values():
        assert re.fullmatch(pattern, f"bench.k1234abcd.{table}")
        assert re.sub(pattern, r"\1", f"bench.k1234abcd.{table}") == table
