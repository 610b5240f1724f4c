"""The CDC benchmark's data, model and files, checked without servers or a JVM."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import orjson

from benchmarks.cdc import changes, run
from benchmarks.connect import phase


def records(n: int, seed: int = 11) -> tuple[changes.Workload, list[tuple[bytes, bytes | None]]]:
    workload = changes.Workload(n, seed)
    return workload, list(workload.records())


def test_the_changes_are_seeded_and_mixed_as_said() -> None:
    first, one = records(4000)
    second, two = records(4000)
    assert one == two
    assert first.expected() == second.expected()
    assert records(4000, seed=12)[1] != one
    ops = first.ops
    assert sum(ops.values()) == 4000
    assert 0.45 < ops["c"] / 4000 < 0.55
    assert 0.35 < ops["u"] / 4000 < 0.45
    assert 0.07 < ops["d"] / 4000 < 0.13
    # Each delete is followed by its tombstone: the same key, no value.
    assert len(one) == 4000 + ops["d"]
    for (key, value), (next_key, next_value) in itertools.pairwise(one):
        if value is not None and orjson.loads(value)["payload"]["op"] == "d":
            assert (next_key, next_value) == (key, None)


def test_the_model_is_the_last_row_of_each_key_and_deletes_remove_it() -> None:
    workload, recs = records(3000)
    table: dict[int, dict[str, Any]] = {}
    lsns = []
    for key, value in recs:
        if value is None:
            continue
        k = orjson.loads(key)
        assert k["schema"] == changes.key_schema()
        change = orjson.loads(value)["payload"]
        lsns.append(change["source"]["lsn"])
        row_key = k["payload"]["id"]
        if change["op"] == "d":
            assert change["before"]["id"] == row_key
            assert change["after"] is None
            del table[row_key]
        else:
            assert change["after"]["id"] == row_key
            assert (change["before"] is None) == (change["op"] == "c")
            table[row_key] = change["after"]
    assert table == workload.model
    assert lsns == sorted(lsns)
    assert len(set(lsns)) == len(lsns)
    assert workload.expected() == [changes.canonical(table[k]) for k in sorted(table)]


def test_every_payload_field_is_in_the_envelope_schema_with_its_type() -> None:
    """What the JSON converter needs to read a value: every field of the payload named by
    the schema, none of the non-optional ones missing."""
    _, recs = records(200)
    value = next(v for _, v in recs if v is not None and b'"op":"u"' in v)
    envelope = orjson.loads(value)
    assert envelope["schema"] == changes.envelope_schema()
    assert envelope["schema"]["name"].endswith(".Envelope")  # how the sink knows it
    fields = {f["field"]: f for f in envelope["schema"]["fields"]}
    assert set(fields) == set(envelope["payload"])
    row = {f["field"]: f for f in fields["after"]["fields"]}
    assert set(row) == set(envelope["payload"]["after"])
    assert row["updated_at"]["name"] == changes.MICRO_TS
    assert row["created_at"]["name"] == changes.ZONED_TS
    assert row["external_id"]["name"] == changes.UUID
    source = {f["field"] for f in fields["source"]["fields"]}
    assert source == set(envelope["payload"]["source"])


def test_canonical_times_are_exact_microseconds() -> None:
    us = changes.EPOCH_US + 123_456_789_012
    assert changes.micros(changes.zoned(us)) == us


def test_the_weir_config_and_the_sink_table_have_the_same_columns(tmp_path: Path) -> None:
    names = run.CdcNames("t0000000")
    config = run.weir_config(names, names.topics["customer"], 2)
    text = config.read_text()
    assert "envelope: debezium" in text
    mirrored = set(run.CONTRACT["properties"]) | {"updated_at"}  # type: ignore[call-overload]
    body = re.search(r"CREATE TABLE \{s\}\.customers \((.*?)\);", run.JDBC_TABLE, re.S)
    assert body is not None
    sink = {c.strip().split()[0] for c in body.group(1).split(",") if c.strip()}
    assert sink - {"ingested_at"} == mirrored == {c[0] for c in changes.COLUMNS}


def test_the_connector_template_renders_whole(tmp_path: Path) -> None:
    rendered = phase.render(run.HERE / "connector.properties.in", tmp_path / "c.properties", {
        "NAME": "n", "TASKS": "2", "TOPICS": "t", "BATCH_SIZE": "5000", "SCHEMA": "s",
        **phase.postgres_values()})
    text = rendered.read_text()
    for line in ("primary.key.mode=record_key", "delete.enabled=true",
                 "insert.mode=upsert", "schema.evolution=none", "use.reduction.buffer=true",
                 "key.converter.schemas.enable=true", "tasks.max=2", "batch.size=5000"):
        assert line in text.splitlines(), line
