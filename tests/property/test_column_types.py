"""Any JSON value in a column of any type: a row whose value has the column's Python type and
range, or a classified rejection; never an exception that would escape into COPY.

The schema maps one untyped property to each column type with ``x-weir-column-type``, so the
JSON Schema lets every value through and the converters alone decide.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest
import yaml
from asyncpg.pgproto.pgproto import UUID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.contracts import ALLOWED_OVERRIDES, load_contracts
from processor.core.errors import EventRejected
from processor.core.pgtime import FIRST_US, LAST_US
from processor.core.settings import load_settings
from processor.decode.converters import INT32, INT64
from processor.decode.decoder import Decoder
from processor.transform.loader import load_chains

TOPIC = "any.columns"
FIELDS = {pg_type: "c_" + pg_type.replace(" ", "_").replace("[]", "_array")
          for pg_type in sorted(ALLOWED_OVERRIDES)}
KINDS: dict[str, tuple[type, ...]] = {
    "text": (str,), "uuid": (UUID,), "bigint": (int,), "integer": (int,),
    "numeric": (Decimal,), "double precision": (float,), "boolean": (bool,),
    "jsonb": (bytes,), "date": (date,), "timestamptz": (int,),
}
RANGES = {"bigint": INT64, "integer": INT32, "timestamptz": (FIRST_US, LAST_US)}
ARRAYS = {f"{t}[]": t for t in ("text", "bigint", "numeric", "uuid", "timestamptz")}
KINDS |= dict.fromkeys(ARRAYS, (list,))


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> Decoder:
    tmp = tmp_path_factory.mktemp("columns")
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {f: {"x-weir-column-type": t} for t, f in FIELDS.items()}}
    (tmp / "any.v1.json").write_bytes(orjson.dumps(schema))
    config = {"kafka": {"bootstrap_servers": "127.0.0.1:1"},
              "postgres": {"dsn": "postgresql://weir@127.0.0.1:1/weir"},
              "event_types": {"any": {"schema_file": str(tmp / "any.v1.json"),
                                      "table": "any_columns"}},
              "topics": [{"name": TOPIC, "event_type": "any"}]}
    (tmp / "weir.yaml").write_text(yaml.safe_dump(config))
    loaded = load_settings(tmp / "weir.yaml")
    return Decoder(loaded, load_contracts(loaded), load_chains(loaded))


texts = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from(["\x00", "é"]),
                max_size=20)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(
    allow_nan=False, allow_infinity=False) | texts | st.uuids().map(str)
    | st.dates().map(date.isoformat) | st.datetimes().map(lambda d: d.isoformat())
    | st.sampled_from(["0000-01-01", "1e-20000", "NaN", "9e131072", "0001-01-01T00:00:00+14:00"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(texts, inner, max_size=3), max_leaves=6)
# Half the time a value of the column's own kind, so that rows with many columns come too.
plain = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
fitting: dict[str, st.SearchStrategy[Any]] = {
    "text": plain, "uuid": st.uuids().map(str), "bigint": st.integers(*INT64),
    "integer": st.integers(*INT32), "numeric": st.floats(allow_nan=False, allow_infinity=False),
    "double precision": st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(), "jsonb": st.dictionaries(plain, st.integers(0, 9), max_size=3),
    "date": st.dates().map(date.isoformat), "timestamptz": st.datetimes().map(
        lambda d: d.isoformat()),
}
fitting |= {a: st.lists(fitting[t] | st.none(), max_size=4) for a, t in ARRAYS.items()}
events = st.fixed_dictionaries({}, optional={field: fitting[pg_type] | values
                                             for pg_type, field in FIELDS.items()})


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(event=events)
def test_a_value_is_its_column_s_type_or_the_event_is_rejected(
    decoder: Decoder, event: dict[str, Any]
) -> None:
    row = outcome(decoder, event)
    if isinstance(row, EventRejected):
        assert row.reason in {"conversion_error", "too_deep", "too_long", "too_many_fields"}
        named = ("field '", 'field "', "a key ")  # repr quotes a name holding ' with "
        assert row.reason != "conversion_error" or str(row).startswith(named)
        return
    for pg_type, field in FIELDS.items():
        value = row[field]
        if value is None:
            continue
        element = ARRAYS.get(pg_type)
        for item in value if element else [value]:
            kind = element or pg_type
            if item is None:
                continue
            assert type(item) in KINDS[kind], (pg_type, value)
            if kind in RANGES:
                low, high = RANGES[kind]
                assert low <= item <= high


def outcome(decoder: Decoder, event: dict[str, Any]) -> dict[str, Any] | EventRejected:
    """The row's typed values by field, or the rejection; anything else escapes."""
    try:
        decoded = decoder.decode(TOPIC, 0, 0, 1_764_064_800_000, orjson.dumps(event))
    except EventRejected as exc:
        return exc
    assert decoded is not None
    return dict(zip(FIELDS.values(), decoded[1], strict=False))
