"""The Avro batch reader reads as the per-record reader renders, and is never laxer.

hypothesis builds random writer schemas (those of ``test_avro_compiled``: records nesting
records, arrays, maps, enums, fixed, unions, every primitive and logical type), a few
records for each, and their bytes damaged (cut short, a byte changed or added). Where
:class:`AvroColumns` covers the schema, every record it is sure of is one the per-record
reader (:class:`AvroReader`, what the row path uses) accepts, with the same JSON as the row
path renders of it, and the same columns as Arrow's JSON reader makes of that JSON with the
same schema. A schema it does not cover must say so when compiled, never misread.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
import orjson
import pyarrow as pa
import pyarrow.json as pj
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from processor.core.errors import EventRejected
from processor.decode.formats.avro import AvroReader, _strip
from processor.decode.formats.avro_columns import AvroColumns, Unsupported
from processor.decode.framed import render
from tests.property.test_avro_compiled import _TOP, _damaged, _value

_NUMBERS = {"int": pa.int64(), "long": pa.int64(), "float": pa.float64(),
            "double": pa.float64(), "boolean": pa.bool_(), "string": pa.string()}


def _arrow(node: Any, named: dict[str, Any]) -> pa.DataType:  # noqa: PLR0911 - one per kind
    """The type a contract of this writer's JSON would give Arrow's reader."""
    if isinstance(node, list):
        concrete = [b for b in node if b != "null"]
        return _arrow(concrete[0], named) if len(concrete) == 1 else pa.null()
    if isinstance(node, str):
        return _NUMBERS.get(node) or (_arrow(named[node], named) if node in named
                                      else pa.null())
    kind, logical = node["type"], node.get("logicalType")
    if logical == "decimal":
        return pa.float64()
    if logical is not None:
        return pa.string()
    if kind in ("record", "error"):
        named[node["name"]] = node
        return pa.struct([(f["name"], _arrow(f["type"], named)) for f in node["fields"]])
    if kind == "enum":
        named[node["name"]] = node
        return pa.string()
    if kind == "array":
        return pa.list_(_arrow(node["items"], named))
    if isinstance(kind, dict | list):
        return _arrow(kind, named)
    return _NUMBERS.get(kind, pa.null())


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_TOP, st.data())
def test_the_batch_reader_takes_only_what_the_row_path_renders_alike(
        schema: dict[str, Any], data: st.DataObject) -> None:
    read = pa.schema([(f["name"], _arrow(f["type"], {})) for f in schema["fields"]])
    try:
        columns = AvroColumns(schema, read)
    except Unsupported:
        event("not covered")
        return
    writer = fastavro.parse_schema(_strip(schema))
    values: list[bytes] = []
    for _ in range(data.draw(st.integers(1, 6))):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, writer, _value(data, schema))
        values.append(out.getvalue())
        if data.draw(st.booleans()):
            values.append(data.draw(st.sampled_from(_damaged(data, out.getvalue()))))
    table, raw, unsure = columns.read(values)
    assert len(table) == len(raw) == len(unsure) == len(values)
    per_record = AvroReader(schema)
    for i, value in enumerate(values):
        if unsure[i]:
            event("unsure")
            continue
        event("sure")
        try:
            decoded = per_record.decode(value, 0)
        except EventRejected as exc:
            pytest.fail(f"sure of {value!r}, which the row path refuses: {exc}")
        rendered = render(decoded)
        assert orjson.loads(raw[i].as_py()) == orjson.loads(rendered), (value, rendered)
        by_arrow = pj.read_json(io.BytesIO(rendered), parse_options=pj.ParseOptions(
            explicit_schema=read, unexpected_field_behavior="error"))
        assert table.slice(i, 1).to_pylist() == by_arrow.to_pylist(), (value, rendered)
