"""Static membership (``kafka.group_instance_id``) on the real Kafka and PostgreSQL.

- A member restarted within the session timeout gets its partitions back and the other
  member never revokes any; without instance ids (the control) the other member does.
- Two live processes given one id: the second is refused at start, loudly, naming the
  holder; the first goes on and writes every event.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROWS, Harness

pytestmark = pytest.mark.integration


def events(h: Harness, name: str, event: str) -> list[dict[str, Any]]:
    return [line for line in h.log_lines(name) if line.get("event") == event]


def wait_log(h: Harness, name: str, event: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(events(h, name, event)) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"{name}: fewer than {count} {event!r} in {timeout}s")


def restart_one(tmp_path: Path, static: bool) -> tuple[int, list[Any], list[Any]]:
    """Two members; restart the first; the second's revocations after it settled, and the
    first's partitions before and after."""
    h = Harness(tmp_path, partitions=6, kafka={"session_timeout_ms": 15000,
                                               "heartbeat_interval_ms": 1000})
    h.migrate()
    try:
        h.produce(200)
        ids = ({"WEIR_KAFKA__GROUP_INSTANCE_ID": "member-a"},
               {"WEIR_KAFKA__GROUP_INSTANCE_ID": "member-b"}) if static else ({}, {})
        h.env.update(ids[0])
        a = h.start("a")
        wait_log(h, "a", "partitions assigned", 1, 60)
        h.env.update(ids[1])
        b = h.start("b")
        h.wait_for(ROWS, 200, 120, alive=[a, b])
        wait_log(h, "b", "partitions assigned", 1, 60)
        time.sleep(3)  # the group settled: both own their share
        revoked_before = len(events(h, "b", "partitions revoked"))
        first = events(h, "a", "partitions assigned")[-1]["partitions"]
        a.send_signal(signal.SIGTERM)
        assert a.wait(60) == 0
        h.env.update(ids[0])
        again = h.start("a2")
        wait_log(h, "a2", "partitions assigned", 1, 60)
        time.sleep(3)
        h.produce(200)
        h.wait_for(ROWS, 400, 120, alive=[again, b])
        revoked = len(events(h, "b", "partitions revoked")) - revoked_before
        second = events(h, "a2", "partitions assigned")[-1]["partitions"]
        for proc in (again, b):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        return revoked, first, second
    finally:
        h.cleanup()


def test_a_static_member_restarted_keeps_its_partitions_and_nobody_else_pauses(
        tmp_path: Path) -> None:
    revoked, first, second = restart_one(tmp_path / "static", static=True)
    assert revoked == 0
    assert sorted(second) == sorted(first)
    # The control: the same restart without instance ids makes the other member revoke.
    revoked, _, _ = restart_one(tmp_path / "dynamic", static=False)
    assert revoked >= 1


def test_two_members_with_one_instance_id_are_refused_loudly(tmp_path: Path) -> None:
    h = Harness(tmp_path, partitions=6)
    h.migrate()
    try:
        h.produce(300)
        h.env["WEIR_KAFKA__GROUP_INSTANCE_ID"] = "twin"
        first = h.start("first")
        wait_log(h, "first", "static instance id claimed", 1, 60)
        second = h.weir("run", timeout=60)
        assert second.returncode == 1
        assert "kafka.group_instance_id 'twin'" in second.stderr, second.stderr
        assert "held by another live Weir process (weir twin pid" in second.stderr
        assert first.poll() is None
        h.produce(300)
        h.wait_for(ROWS, 600, 120, alive=[first])
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        # Once the first has gone, the id is free again.
        h.produce(100)
        again = h.weir("run", "--until-caught-up", timeout=120)
        assert again.returncode == 0, again.stderr[-2000:]
        assert h.scalar(ROWS) == 700
    finally:
        h.cleanup()


def test_a_claim_lost_with_its_connection_is_taken_again(tmp_path: Path) -> None:
    h = Harness(tmp_path, partitions=3)
    h.migrate()
    try:
        h.produce(100)
        h.env["WEIR_KAFKA__GROUP_INSTANCE_ID"] = "comeback"
        proc = h.start("run")
        wait_log(h, "run", "static instance id claimed", 1, 60)
        claim = "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'weir comeback pid%'"
        first = h.scalar(claim)
        assert h.scalar("SELECT pg_terminate_backend($1)", first) is True
        wait_log(h, "run", "static instance id claimed", 2, 30)  # taken again, by itself
        assert h.scalar(claim) not in (None, first)
        # Still one holder, so a second process with the id is still refused.
        second = h.weir("run", timeout=60)
        assert second.returncode == 1, second.stderr[-2000:]
        assert proc.poll() is None
        h.produce(100)
        h.wait_for(ROWS, 200, 120, alive=[proc])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        h.cleanup()
