"""`weir check-config` names the bad setting and why, and exits 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without WEIR_* overrides, which would mask the file's faults."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}, **extra}


def check(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", "check-config", str(config)],
        capture_output=True, text=True, timeout=60, env=env or clean_env(), check=False,
    )


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "config" / "example.yaml").read_text()
    assert old in text
    text = text.replace(old, new, 1).replace("../schemas", str(ROOT / "schemas"))
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_example_config_is_accepted() -> None:
    result = check(ROOT / "config" / "example.yaml")
    assert result.returncode == 0, result.stderr
    assert "order v1 -> orders" in result.stdout


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_rows: 5000", "max_rows: -5", "batch.max_rows: Input should be greater than 0"),
        ("table: orders", "table: orders; drop table x",
         "event_types.order.table: 'orders; drop table x' is not a safe SQL identifier"),
        ("event_type: order", "event_type: refund",
         "topic 'weir.orders' names event_type 'refund', which is not under event_types"),
        ("order.v1.json", "order.v9.json", "event_types.order.schema_file:"),
        ("normalize_currency", "no_such_function",
         "processor.transform.examples has no callable 'no_such_function'"),
        ("lanes: 4", "lanes: 8",
         "postgres.pool_size: 6 is less than pipeline.lanes (8)"),
        ("  group_id: weir-example", "  group_id: weir-example\n  sesion_timeout_ms: 5",
         "kafka.sesion_timeout_ms: Extra inputs are not permitted"),
        ("dsn: postgresql://", "dsn: mysql://", "postgres.dsn: must start with postgresql://"),
    ],
)
def test_bad_config_names_the_setting(tmp_path: Path, old: str, new: str, message: str) -> None:
    result = check(variant(tmp_path, old, new))
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


def test_environment_overrides_the_file_and_is_validated(tmp_path: Path) -> None:
    result = check(ROOT / "config" / "example.yaml", env=clean_env(WEIR_BATCH__LINGER_MS="zero"))
    assert result.returncode == 2
    assert "batch.linger_ms: Input should be a valid integer" in result.stderr


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    assert "does not exist" in check(tmp_path / "nope.yaml").stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("kafka: [unclosed")
    result = check(broken)
    assert result.returncode == 2
    assert "is not valid YAML" in result.stderr
