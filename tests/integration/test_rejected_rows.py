"""Rows the table refuses are isolated by bisection and dead-lettered; their neighbours land.
A failure that is not about the rows stops Weir instead of dead-lettering everything."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.conftest import ROWS, Harness


def test_check_constraint_rejects_only_the_offending_rows(harness: Harness) -> None:
    h = harness
    h.sql("ALTER TABLE orders ADD CONSTRAINT amount_below_500 CHECK (amount < 500)")
    h.produce(4000)
    weir = h.start("weir", "--until-caught-up")
    assert weir.wait(180) == 0
    acks = h.acks()
    orders = sum(1 for a in acks if a["topic"] == h.topics["order"])
    written = h.scalar("SELECT count(*) FROM orders")
    rejected = h.scalar("SELECT count(*) FROM weir_dead_letters WHERE reason = "
                        "'rejected_by_table' AND stage = 'sink'")
    assert rejected > 0
    assert written > 0
    assert written + rejected == orders  # every order is in exactly one place
    assert h.scalar("SELECT max(amount) FROM orders") < 500
    errors = h.sql("SELECT DISTINCT error FROM weir_dead_letters")
    assert all("CheckViolationError" in r["error"] and "amount_below_500" in r["error"]
               for r in errors)
    # The dead letter keeps the original bytes: its amount is the offending one.
    assert h.scalar("SELECT bool_and((convert_from(value, 'UTF8')::jsonb->>'amount')::numeric"
                    " >= 500) FROM weir_dead_letters") is True


def break_orders(h: Harness) -> None:
    """The target becomes something no row can be inserted into: the same error for every
    row, which bisection must not mistake for bad rows."""
    h.sql("ALTER TABLE orders RENAME TO orders_gone")
    h.sql("CREATE VIEW orders AS SELECT DISTINCT * FROM orders_gone")  # not insertable


def test_a_failure_not_about_rows_stalls_weir_with_nothing_dead_lettered_until_fixed(
    harness: Harness,
) -> None:
    h = harness
    h.produce(500)
    break_orders(h)
    weir = h.start("weir", "--until-caught-up")

    def stalls() -> list[dict[str, object]]:
        return [line for line in h.log_lines("weir")
                if str(line.get("event", "")).startswith("stalled:")]

    deadline = time.monotonic() + 120
    while not stalls() and time.monotonic() < deadline:
        assert weir.poll() is None, h.why_exited(weir)
        time.sleep(0.5)
    time.sleep(8)  # stalled, retrying: up, nothing dead-lettered, no order offset stored
    assert weir.poll() is None, h.why_exited(weir)
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    assert h.scalar("SELECT coalesce(max(next_offset), 0) FROM weir_offsets "
                    "WHERE topic = $1", h.topics["order"]) == 0
    stalled = stalls()
    assert stalled
    assert 'cannot insert into view "orders"' in str(stalled[0]["error"])  # the cause
    h.sql("DROP VIEW orders")
    h.sql("ALTER TABLE orders_gone RENAME TO orders")  # the operator's fix
    assert weir.wait(120) == 0  # resumed by itself, then caught up
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    assert h.scalar(ROWS) == 500


def test_with_on_stall_exit_a_failure_not_about_rows_stops_weir(tmp_path: Path) -> None:
    h = Harness(tmp_path, postgres={"on_stall": "exit"})
    h.migrate()
    try:
        h.produce(500)
        break_orders(h)
        weir = h.start("weir")
        assert weir.wait(120) == 1
        assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
        stopped = [line for line in h.log_lines("weir")
                   if line.get("event", "").startswith("weir stopped on an error")]
        assert stopped
        assert 'cannot insert into view "orders"' in stopped[0]["error"]
    finally:
        h.cleanup()


def test_dlq_list_show_and_replay_after_a_fix(harness: Harness) -> None:
    h = harness
    h.sql("ALTER TABLE orders ADD CONSTRAINT amount_below_500 CHECK (amount < 500)")
    h.produce(3000, "--invalid-ratio", "0.02")
    first = h.start("first", "--until-caught-up")
    assert first.wait(180) == 0
    refused = h.scalar("SELECT count(*) FROM weir_dead_letters WHERE reason = "
                       "'rejected_by_table'")
    broken = h.scalar("SELECT count(*) FROM weir_dead_letters WHERE stage <> 'sink'")
    assert refused > 0
    assert broken > 0
    listed = h.weir("dlq", "list", "--reason", "rejected_by_table", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    assert f"{refused} dead letter(s)" in listed.stdout
    one = h.scalar("SELECT min(id) FROM weir_dead_letters WHERE reason = 'rejected_by_table'")
    shown = h.weir("dlq", "show", str(one))
    assert "amount_below_500" in shown.stdout
    assert '"amount"' in shown.stdout  # the original value, readable
    # The fix: the table accepts large orders now. Replay what it had refused.
    h.sql("ALTER TABLE orders DROP CONSTRAINT amount_below_500")
    replayed = h.weir("dlq", "replay", "--reason", "rejected_by_table")
    assert f"replayed {refused} dead letter(s)" in replayed.stdout
    again = h.weir("dlq", "replay", "--reason", "rejected_by_table")
    assert "replayed 0 dead letter(s)" in again.stdout  # each one is replayed once
    # Broken bytes fail again after a replay: they come back as new dead letters.
    undecodable = h.scalar("SELECT count(*) FROM weir_dead_letters WHERE reason = "
                           "'decode_error'")
    assert f"replayed {undecodable} dead letter(s)" in h.weir(
        "dlq", "replay", "--reason", "decode_error").stdout
    second = h.start("second", "--until-caught-up")
    assert second.wait(180) == 0
    orders = sum(1 for a in h.acks() if a["topic"] == h.topics["order"] and "invalid" not in a)
    assert h.scalar("SELECT count(*) FROM orders") == orders  # every valid order, once
    assert h.scalar("SELECT count(DISTINCT event_id) FROM orders") == orders
    assert h.scalar("SELECT count(*) FROM weir_dead_letters WHERE reason = "
                    "'rejected_by_table' AND replayed_at IS NULL") == 0
    if undecodable:
        back = h.sql("SELECT count(*) FILTER (WHERE replayed_at IS NULL) AS new, "
                     "count(*) FILTER (WHERE replayed_at IS NOT NULL) AS old "
                     "FROM weir_dead_letters WHERE reason = 'decode_error'")[0]
        assert (back["new"], back["old"]) == (undecodable, undecodable)
