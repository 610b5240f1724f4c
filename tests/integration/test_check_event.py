"""`weir check-event` on framed Avro values, through the real schema registry."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from processor.commands.produce.encode import encoder, frame
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import load_settings
from tests.integration.conftest import PG_DSN, REGISTRY, ROOT, base_env

CLOSED = "http://127.0.0.1:9/"  # the discard port: nothing listens on it


def write_config(tmp_path: Path, subject: str, registry: str, name: str = "weir.yaml") -> Path:
    """The example's shape, its order topic read as Avro under ``subject``."""
    config: dict[str, Any] = {
        "kafka": {"bootstrap_servers": "127.0.0.1:19092", "group_id": f"it-{subject}"},
        "postgres": {"dsn": PG_DSN, "schema_name": "it_check_event", "pool_size": 4},
        "metrics": {"enabled": False},
        "schema_registry": {"url": registry},
        "event_types": {
            "order": {"schema_file": str(ROOT / "schemas/order.v1.json"), "table": "orders",
                      "id_field": "event_id", "time_field": "occurred_at",
                      "key_field": "customer_id",
                      "transforms": ["processor.transform.examples:normalize_currency"]},
        },
        "topics": [{"name": "it.check.orders", "event_type": "order", "format": "avro",
                    "subject": subject}],
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def check(config: Path, value: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "processor", "check-event", "-c", str(config),
         "--topic", "it.check.orders", *extra],
        input=value, capture_output=True, timeout=60, env=base_env(), check=False)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], bytes]:
    """A config whose subject holds order.avsc; one sample order and its framed value."""
    tmp = tmp_path_factory.mktemp("check_event")
    config = write_config(tmp, f"it-check-event-{uuid.uuid4().hex[:8]}-value", REGISTRY)
    settings = load_settings(config)
    encode = encoder(settings, settings.topics[0], "order", "avro")
    _, event = SampleEvents(seed=5).make("order")
    return config, event, encode(event)


def test_a_framed_avro_order_is_a_row(registered: tuple[Path, dict[str, Any], bytes]) -> None:
    config, event, value = registered
    assert value[0] == 0  # framed: magic byte, then the schema id
    result = check(config, value)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "row: orders"
    shown = dict(line.strip().split(" = ", 1) for line in lines[1:])
    assert shown["event_id"] == event["event_id"]
    assert shown["customer_id"] == orjson.dumps(event["customer_id"]).decode()
    assert shown["currency"] == orjson.dumps(event["currency"].upper()).decode()
    assert shown["kafka_topic"] == '"it.check.orders"'
    assert list(shown)[-1] == "raw"

    out = orjson.loads(check(config, value, "--json").stdout)
    assert (out["verdict"], out["event_type"], out["table"]) == ("row", "order", "orders")
    assert out["columns"]["order_id"] == event["order_id"]
    assert out["columns"]["seq"] == event["seq"]
    assert out["columns"]["amount"] == pytest.approx(event["amount"])
    assert out["columns"]["raw"]["event_id"] == event["event_id"]


def test_a_truncated_value_is_a_decode_error(
        registered: tuple[Path, dict[str, Any], bytes]) -> None:
    config, _, value = registered
    result = check(config, value[:-4], "--json")
    assert result.returncode == 1, result.stderr.decode()
    out = orjson.loads(result.stdout)
    assert (out["verdict"], out["reason"], out["stage"]) == ("dead_letter", "decode_error",
                                                             "decode")


def test_an_unknown_schema_id_is_a_dead_letter(
        registered: tuple[Path, dict[str, Any], bytes]) -> None:
    config, _, value = registered
    result = check(config, frame(999_999_999, value[5:]))
    assert result.returncode == 1, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "dead letter: unknown_schema_id (decode)"
    assert "999999999" in lines[1]


def test_a_registry_that_does_not_answer_exits_2(
        registered: tuple[Path, dict[str, Any], bytes], tmp_path: Path) -> None:
    _, _, value = registered
    config = write_config(tmp_path, "it-check-event-closed-value", CLOSED)
    result = check(config, value)
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode().strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("weir: ")
    assert "schema registry http://127.0.0.1:9" in err[0]
    assert "Traceback" not in result.stderr.decode()
