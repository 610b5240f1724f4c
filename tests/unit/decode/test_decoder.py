import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.contracts import load_contracts
from processor.core.errors import EventRejected
from processor.core.pgtime import micros
from processor.core.settings import load_settings
from processor.decode.decoder import Decoder
from processor.transform.loader import load_chains


@pytest.fixture
def decoder(example_config: Path) -> Decoder:
    settings = load_settings(example_config)
    return Decoder(settings, load_contracts(settings), load_chains(settings))


def order(**changes: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()), "customer_id": "c-000001", "seq": 1,
        "occurred_at": "2026-11-25T10:00:00.000+00:00", "order_id": "o-1", "status": "paid",
        "amount": 19.99, "currency": "eur", "items": [{"sku": "a", "qty": 1, "price": 19.99}],
    }
    event.update(changes)
    return event


def decode(decoder: Decoder, value: bytes | None, topic: str = "weir.orders") -> Any:
    return decoder.decode(topic, 3, 42, 1_764_064_800_000, value)


def test_valid_order_becomes_a_typed_row(decoder: Decoder) -> None:
    raw = orjson.dumps(order())
    event_type, values, (items,) = decode(decoder, raw)
    assert event_type == "order"
    row = dict(zip(
        ["event_id", "customer_id", "seq", "occurred_at", "order_id", "status", "amount",
         "currency", "items", "channel", "shipping", "tags", "placed_ms", "ship_country",
         "ship_city", "placed_at", "tenant", "kafka_key", "event_time", "kafka_topic",
         "kafka_partition", "kafka_offset", "kafka_timestamp", "raw"], values, strict=True))
    # The line items, as the order_items child table's rows (docs/analysts.md).
    assert items == [(row["event_id"], row["event_time"], "weir.orders", 3, 42, 0, "a", 1,
                      Decimal("19.99"))]
    assert row["amount"] == Decimal("19.99")
    assert row["currency"] == "EUR"  # the normalize_currency transform ran
    # Timestamps are PostgreSQL's integer (processor/core/pgtime.py), ready for binary COPY.
    assert row["occurred_at"] == micros(datetime(2026, 11, 25, 10, tzinfo=UTC))
    assert row["kafka_timestamp"] == micros(datetime.fromtimestamp(1_764_064_800, UTC))
    assert row["event_time"] == row["occurred_at"]
    assert orjson.loads(row["items"]) == [{"sku": "a", "qty": 1, "price": 19.99}]
    assert row["channel"] is None
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == (
        "weir.orders", 3, 42)
    assert row["raw"] is raw  # the original bytes, not a re-encoding


@pytest.mark.parametrize(
    ("value", "reason", "fragment"),
    [
        (None, "empty_value", "tombstone"),
        (b"\xff\xfe not json", "decode_error", "not JSON"),
        (b'{"a": "\xed\xa0\x80"}', "decode_error", "not JSON"),  # invalid UTF-8 (surrogate)
        (b"[1, 2, 3]", "not_an_object", "got list"),
        (orjson.dumps({k: v for k, v in order().items() if k != "status"}),
         "schema_violation", "status"),
        (orjson.dumps(order(amount="lots")), "schema_violation", "amount"),
        (orjson.dumps(order(currency=None)), "schema_violation", "currency"),
        (b"{" + b'"x": "' + b"a" * 2_000_000 + b'"}', "too_large", "max_message_bytes"),
        # Past the schema, refused by the column (or jsonb): the message names the field.
        (orjson.dumps(order(event_id="not-a-uuid")), "conversion_error",
         "field 'event_id': 'not-a-uuid' is not a UUID"),
        (orjson.dumps(order(seq=2**63)), "conversion_error",
         "field 'seq': 9223372036854775808 is out of range for bigint"),
        (orjson.dumps(order(order_id="o\x00")), "conversion_error",
         "field 'order_id' holds a NUL character"),
        (orjson.dumps(order(extra={"k\x00": 1})), "conversion_error", "a key ('k\\x00') in"),
        (orjson.dumps(order(occurred_at="0000-01-01T00:00:00Z")), "conversion_error",
         "field 'occurred_at': '0000-01-01T00:00:00Z' is not a valid date-time"),
        (b'{"event_id": "\\ud800"}', "decode_error", "surrogate"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(
    decoder: Decoder, value: bytes | None, reason: str, fragment: str
) -> None:
    with pytest.raises(EventRejected) as info:
        decode(decoder, value)
    assert info.value.reason == reason
    assert fragment in str(info.value)


def test_transform_can_drop_an_event(decoder: Decoder) -> None:
    view = {"event_id": str(uuid.uuid4()), "user_id": "u-1", "seq": 1,
            "occurred_at": "2026-11-25T10:00:00Z", "session_id": "s", "url": "https://x/",
            "user_agent": "Googlebot/2.1"}
    assert decode(decoder, orjson.dumps(view), topic="weir.page_views") is None


def test_transform_that_raises_rejects_only_that_event(decoder: Decoder) -> None:
    view = {"event_id": str(uuid.uuid4()), "user_id": "u-1", "seq": 1,
            "occurred_at": "2026-11-25T10:00:00Z", "session_id": "s", "url": "https://x/?q=1"}
    _, values = decode(decoder, orjson.dumps(view), topic="weir.page_views")
    assert "https://x/" in values
    with pytest.raises(EventRejected) as info:
        # strip_url_query cannot split a URL with an invalid IPv6 host
        decode(decoder, orjson.dumps({**view, "url": "http://[::1/"}), topic="weir.page_views")
    assert info.value.reason == "transform_error"
    assert "strip_url_query" in str(info.value)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"channel": None, "note": {"a": {"b": {"c": {"d": 1}}}}}, "too_deep"),
        ({"note": "x" * 101}, "too_long"),
        ({"note": list(range(101))}, "too_long"),
        ({f"f{i}": i for i in range(120)}, "too_many_fields"),
        ({"k" * 101: 1}, "too_long"),
    ],
)
def test_shape_limits_reject_hostile_events(
    example_config: Path, tmp_path: Path, extra: dict[str, Any], reason: str
) -> None:
    text = example_config.read_text().replace("../schemas", str(example_config.parent.parent /
                                                                 "schemas"))
    text += ("\n" if not text.endswith("\n") else "")
    config = tmp_path / "limits.yaml"
    config.write_text(text.replace(
        "pipeline:\n  lanes: 4",
        "pipeline:\n  lanes: 4\n  max_json_depth: 4\n  max_string_length: 100\n"
        "  max_array_length: 100\n  max_object_fields: 100"))
    settings = load_settings(config)
    assert settings.pipeline.max_json_depth == 4
    strict = Decoder(settings, load_contracts(settings), load_chains(settings))
    with pytest.raises(EventRejected) as info:
        decode(strict, orjson.dumps(order(**extra)))
    assert info.value.reason == reason


def test_events_within_the_limits_pass(decoder: Decoder) -> None:
    assert decode(decoder, orjson.dumps(order(channel="web")))[0] == "order"


def nul_in_order_id(event: dict[str, Any]) -> dict[str, Any]:
    """A transform that writes what no text column holds (used by the test below)."""
    event["order_id"] += "\x00"
    return event


def raises_with_nul(event: dict[str, Any]) -> dict[str, Any]:
    """A transform whose exception quotes what no text column holds (used below)."""
    raise ValueError("bad \x00 \ud800")


def test_a_transform_error_message_fits_the_error_column(
    example_config: Path, tmp_path: Path
) -> None:
    raising = _with_transforms(
        example_config, tmp_path,
        "    transforms:\n      - tests.unit.decode.test_decoder:raises_with_nul\n")
    with pytest.raises(EventRejected) as info:
        decode(raising, orjson.dumps(order()))
    assert info.value.reason == "transform_error"
    assert str(info.value) == "raises_with_nul: ValueError: bad \\x00 \\ud800"


def returns_a_list(event: dict[str, Any]) -> list[Any]:
    """A transform that returns something other than the event (used below)."""
    return list(event)


def test_a_transform_that_returns_no_event_rejects_only_that_event(
    example_config: Path, tmp_path: Path
) -> None:
    listing = _with_transforms(
        example_config, tmp_path,
        "    transforms:\n      - tests.unit.decode.test_decoder:returns_a_list\n")
    with pytest.raises(EventRejected) as info:
        decode(listing, orjson.dumps(order()))
    assert info.value.reason == "transform_error"
    assert str(info.value) == "returns_a_list returned list, not the event (a dict) or None"


def _with_transforms(example_config: Path, tmp_path: Path, transforms: str) -> Decoder:
    text = example_config.read_text().replace("../schemas", str(example_config.parent.parent /
                                                                 "schemas"))
    config = tmp_path / "transforms.yaml"
    config.write_text(text.replace(
        "    transforms:\n      - processor.transform.examples:normalize_currency\n",
        transforms))
    settings = load_settings(config)
    return Decoder(settings, load_contracts(settings), load_chains(settings))


def test_a_transform_s_output_is_checked_too(example_config: Path, tmp_path: Path) -> None:
    transformed = _with_transforms(
        example_config, tmp_path,
        "    transforms:\n      - tests.unit.decode.test_decoder:nul_in_order_id\n")
    plan = transformed._plans["order"]
    assert [plan.names[i] for i in plan.texts] == [
        "customer_id", "order_id", "status", "currency", "channel"]
    with pytest.raises(EventRejected) as info:
        decode(transformed, orjson.dumps(order()))
    assert (info.value.reason, info.value.stage) == ("conversion_error", "transform")
    assert "field 'order_id': 'o-1\\x00' holds a NUL character" in str(info.value)


def test_schema_strings_of_a_plan_without_transforms_are_not_checked_again(
    example_config: Path, tmp_path: Path
) -> None:
    plain = _with_transforms(example_config, tmp_path, "")
    assert plain._plans["order"].texts == ()  # orjson's strings, the raw check passed
    with pytest.raises(EventRejected) as info:
        decode(plain, orjson.dumps(order(status="paid", customer_id="c\x00")))
    assert "field 'customer_id' holds a NUL character" in str(info.value)


@pytest.mark.parametrize("timestamp_ms", [253_402_300_800_000, 9_000_000_000_000_000,
                                          -62_135_596_800_001])
def test_a_kafka_timestamp_outside_the_years_1_to_9999_is_refused(
    decoder: Decoder, timestamp_ms: int
) -> None:
    with pytest.raises(EventRejected) as info:
        decoder.decode("weir.orders", 0, 1, timestamp_ms, orjson.dumps(order()))
    assert (info.value.reason, info.value.stage) == ("conversion_error", "decode")
    assert f"the record's Kafka timestamp ({timestamp_ms} ms" in str(info.value)


def test_the_last_millisecond_of_9999_is_a_kafka_timestamp_weir_takes(decoder: Decoder) -> None:
    assert decoder.decode("weir.orders", 0, 1, 253_402_300_799_999, orjson.dumps(order()))
