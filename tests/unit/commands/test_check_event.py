"""`weir check-event`: one JSON record value's verdict, as `weir run` would give it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.commands.check_event import CheckRefused, EventVerdict, check_event, text_value
from processor.contracts import load_contracts
from processor.core.settings import load_settings
from processor.schema.tables import table_spec
from processor.transform.loader import load_chains

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config" / "example.yaml"

ORDER: dict[str, Any] = {
    "event_id": "18072e8c-35bf-492d-89e9-c616612e7696", "customer_id": "c-000042", "seq": 3,
    "occurred_at": "2026-03-01T12:30:00.250+00:00", "order_id": "o-1", "status": "paid",
    "amount": 47.73, "currency": "eur", "items": [{"sku": "sku-1", "qty": 3, "price": 15.91}],
    "channel": "web",
}
BOT_VIEW: dict[str, Any] = {
    "event_id": "c2ce6f44-7ed4-457b-9e2f-eb89414c343c", "user_id": "u-1", "seq": 1,
    "occurred_at": "2026-03-01T12:30:00Z", "session_id": "s-1",
    "url": "https://shop.example/help", "user_agent": "Googlebot/2.1", "duration_ms": 10,
}


def env() -> dict[str, str]:
    """The caller's environment without WEIR_* overrides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}


def weir(*args: str, value: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", "check-event", "-c", str(CONFIG), *args],
        input=value.decode() if value is not None else "", capture_output=True, text=True,
        timeout=60, env=env(), check=False)


def loaded() -> tuple[Any, Any, Any]:
    settings = load_settings(CONFIG)
    return settings, load_contracts(settings), load_chains(settings)


def verdict_of(topic: str, value: bytes | None, **kw: Any) -> EventVerdict:
    settings, contracts, transforms = loaded()
    return asyncio.run(check_event(settings, contracts, transforms, topic, value, **kw))


def test_a_valid_order_is_a_row_with_every_column_in_copy_order(tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_bytes(orjson.dumps(ORDER))
    result = weir("--topic", "weir.orders", "--file", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "row: orders"
    settings, contracts, _ = loaded()
    spec = table_spec(contracts["order"], settings)
    own = lines[1:1 + len(spec.columns)]
    names = [line.split(" = ", 1)[0].strip() for line in own]
    assert names == list(spec.columns)
    assert names[-1] == "raw"
    # Then its line items, as the child table's rows.
    assert lines[1 + len(spec.columns)] == f"child rows: order_items ({len(ORDER['items'])})"
    assert lines[2 + len(spec.columns)].startswith(
        f"  event_id = {ORDER['event_id']}, event_time = ")
    shown = dict(line.strip().split(" = ", 1) for line in own)
    assert shown["currency"] == '"EUR"'  # the transform ran
    assert shown["occurred_at"] == "2026-03-01T12:30:00.250000+00:00"
    assert shown["event_time"] == shown["occurred_at"]
    assert shown["amount"] == "47.73"
    assert shown["kafka_topic"] == '"weir.orders"'
    assert (shown["kafka_partition"], shown["kafka_offset"]) == ("0", "0")
    assert orjson.loads(shown["raw"]) == ORDER  # raw is the event as it came
    assert orjson.loads(shown["items"]) == ORDER["items"]


def test_json_output_parses_and_holds_the_row() -> None:
    before = time.time()
    result = weir("--topic", "weir.orders", "--json", value=orjson.dumps(ORDER) + b"\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    out = orjson.loads(result.stdout)
    assert (out["verdict"], out["event_type"], out["table"]) == ("row", "order", "orders")
    columns = out["columns"]
    assert columns["currency"] == "EUR"
    assert columns["amount"] == 47.73
    assert columns["seq"] == 3
    assert columns["channel"] == "web"
    assert columns["occurred_at"] == "2026-03-01T12:30:00.250000+00:00"
    assert columns["raw"] == ORDER
    kafka_ts = datetime.fromisoformat(columns["kafka_timestamp"]).timestamp()
    assert before - 1 <= kafka_ts <= time.time() + 1  # the current time


def test_a_broken_order_is_a_dead_letter_with_its_reason() -> None:
    broken = {**ORDER, "amount": "lots"}
    result = weir("--topic", "weir.orders", value=orjson.dumps(broken))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dead letter: schema_violation (validate)"
    assert "order v1" in lines[1]
    assert "amount" in lines[1]
    result = weir("--topic", "weir.orders", "--json", value=orjson.dumps(broken))
    assert result.returncode == 1
    out = orjson.loads(result.stdout)
    assert out["verdict"] == "dead_letter"
    assert (out["reason"], out["stage"]) == ("schema_violation", "validate")
    assert "amount" in out["message"]
    assert "columns" not in out


def test_not_json_is_a_decode_error() -> None:
    result = weir("--topic", "weir.orders", "--json", value=b'{"event_id": ')
    assert result.returncode == 1
    out = orjson.loads(result.stdout)
    assert (out["reason"], out["stage"]) == ("decode_error", "decode")
    assert out["message"].startswith("not JSON")


def test_an_unknown_topic_exits_2_naming_the_configured_ones() -> None:
    result = weir("--topic", "weir.nope", value=orjson.dumps(ORDER))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "weir: topic 'weir.nope' is not in the config; its topics are weir.orders, "
        "weir.orders.avro, weir.page_views"]


def test_usage_problems_exit_2_without_a_traceback(tmp_path: Path) -> None:
    missing = weir("--topic", "weir.orders", "--file", str(tmp_path / "absent.json"))
    assert missing.returncode == 2
    assert "absent.json" in missing.stderr
    assert "Traceback" not in missing.stderr
    header = weir("--topic", "weir.orders", "--header", "no-equals", value=orjson.dumps(ORDER))
    assert header.returncode == 2
    assert "NAME=VALUE" in header.stderr
    assert "Traceback" not in header.stderr


def test_a_dropped_event_is_filtered() -> None:
    result = weir("--topic", "weir.page_views", value=orjson.dumps(BOT_VIEW))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "filtered: a transform dropped the event"
    out = orjson.loads(weir("--topic", "weir.page_views", "--json",
                            value=orjson.dumps(BOT_VIEW)).stdout)
    assert out == {"verdict": "filtered", "event_type": "page_view", "table": "page_views"}


def test_the_verdict_uses_the_given_coordinates_and_timestamp() -> None:
    verdict = verdict_of("weir.orders", orjson.dumps(ORDER), key=b"c-000042",
                         timestamp_ms=1_700_000_000_123)
    assert (verdict.verdict, verdict.exit_code) == ("row", 0)
    columns = {c.name: c for c in verdict.columns}
    assert columns["amount"].value == Decimal("47.73")
    assert verdict.as_dict()["columns"]["kafka_timestamp"] == "2023-11-14T22:13:20.123000+00:00"
    assert text_value("numeric", Decimal("1.2E+3")) == "1200"
    assert text_value("text", None) == "null"


def test_a_timestamp_outside_the_years_is_a_dead_letter() -> None:
    verdict = verdict_of("weir.orders", orjson.dumps(ORDER), timestamp_ms=-10**15)
    assert (verdict.verdict, verdict.reason, verdict.exit_code) == (
        "dead_letter", "conversion_error", 1)


def test_a_tombstone_on_an_insert_table_is_refused() -> None:
    verdict = verdict_of("weir.orders", None, key=b"c-1")
    assert (verdict.verdict, verdict.reason, verdict.stage) == (
        "dead_letter", "empty_value", "decode")


def test_an_unknown_topic_is_refused_not_dead_lettered() -> None:
    with pytest.raises(CheckRefused, match=r"weir\.orders, weir\.orders\.avro, weir\.page_views"):
        verdict_of("other", b"{}")


def upsert_config(tmp_path: Path) -> Path:
    """The example's orders as an upsert table keyed by the Kafka key: tombstones delete."""
    import yaml
    config = yaml.safe_load(CONFIG.read_text())
    order = config["event_types"]["order"]
    order["schema_file"] = str(ROOT / "schemas" / "order.v1.json")
    config["event_types"]["page_view"]["schema_file"] = str(
        ROOT / "schemas" / "page_view.v1.json")
    order.update(write_mode="upsert", upsert_key=["customer_id"])
    for name in ("partitioning", "rollups", "children"):
        order.pop(name)
    path = tmp_path / "upsert.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_tombstone_of_an_upsert_table_is_its_key_row(tmp_path: Path) -> None:
    config = upsert_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "processor", "check-event", "-c", str(config), "--topic",
         "weir.orders", "--tombstone", "--key", "c-9", "--json"],
        capture_output=True, text=True, timeout=60, env=env(), check=False)
    assert result.returncode == 0, result.stderr
    out = orjson.loads(result.stdout)
    assert out["verdict"] == "row"
    columns = out["columns"]
    assert list(columns)[:2] == ["customer_id", "event_time"]
    assert columns["customer_id"] == "c-9"
    assert columns["raw"] is None
    assert columns["event_time"] == columns["kafka_timestamp"]
