import io
import logging
import sys

import orjson
import pytest
import structlog

from processor.core import logs


def test_secrets_are_blanked_by_key_and_inside_uris() -> None:
    event = logs.redact(None, "info", {
        "event": "x", "sasl_password": "hunter2", "db_password": "pw",
        "error": "cannot connect to postgresql://weir:s3cret@db:5432/weir: refused",
        "topic": "orders",
    })
    assert event["sasl_password"] == "***"
    assert event["db_password"] == "***"
    assert "s3cret" not in event["error"]
    assert "postgresql://weir:***@db:5432/weir" in event["error"]
    assert event["topic"] == "orders"


def test_repeated_errors_print_once_per_window_with_a_count() -> None:
    limiter = logs.RateLimiter(window_s=60)
    first = limiter(None, "warning", {"event": "retrying", "error": "ConnectionRefused"})
    assert "repeated" not in first
    for _ in range(5):
        with pytest.raises(structlog.DropEvent):
            limiter(None, "warning", {"event": "retrying", "error": "ConnectionRefused"})
    other = limiter(None, "warning", {"event": "retrying", "error": "Deadlock"})
    assert "repeated" not in other
    assert limiter(None, "info", {"event": "retrying"})  # info is never limited


def test_the_held_back_count_comes_with_the_next_window() -> None:
    limiter = logs.RateLimiter(window_s=0.0)
    assert limiter(None, "error", {"event": "e"}) == {"event": "e"}
    limiter._window_s = 60
    with pytest.raises(structlog.DropEvent):
        limiter(None, "error", {"event": "e"})
    limiter._window_s = 0.0
    assert limiter(None, "error", {"event": "e"})["repeated"] == 1


def test_json_lines_have_the_stable_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    logs.configure("info", "json")
    try:
        structlog.get_logger("t").info("batch committed", topic="orders", partition=3,
                                       postgres_password="nope")
    finally:
        structlog.reset_defaults()
    line = orjson.loads(out.getvalue().splitlines()[-1])
    assert {"timestamp", "level", "event", "topic", "partition"} <= set(line)
    assert line["level"] == "info"
    assert line["postgres_password"] == "***"


def test_standard_library_lines_are_json_with_a_level(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    try:
        logging.getLogger("aiokafka.consumer.group_coordinator").warning(
            "Marking the coordinator dead (node %s) for group %s.", 1, "weir")
    finally:
        _unconfigure()
    line = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = orjson.loads(line)
    assert parsed["level"] == "warning"
    assert parsed["event"] == "Marking the coordinator dead (node 1) for group weir."
    assert parsed["logger"] == "aiokafka.consumer.group_coordinator"
    assert "timestamp" in parsed


def test_a_workers_lines_carry_its_id(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    structlog.contextvars.bind_contextvars(worker=1)
    try:
        structlog.get_logger("t").info("batch committed")
        logging.getLogger("aiokafka").warning("Heartbeat failed")
    finally:
        structlog.contextvars.clear_contextvars()
        _unconfigure()
    lines = [orjson.loads(x) for x in capsys.readouterr().out.strip().splitlines()[-2:]]
    assert [line["worker"] for line in lines] == [1, 1]


def _unconfigure() -> None:
    """Later tests must not print to this test's captured (then closed) stdout."""
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()
