"""The live status page in headless Chromium (Debian's package), against a running Weir."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_observability import eventually, get, observed

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: scripts/test-deps.sh installs it (make test runs it)")
    profile = tempfile.mkdtemp(prefix="weir-chromium-")
    try:
        return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def shown(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"#{element_id} not in the page"
    return match.group(1)


def test_status_page_shows_lag_partitions_and_dead_letters(tmp_path: Path) -> None:
    h, port = observed(tmp_path)
    h.migrate()
    base = f"http://127.0.0.1:{port}"
    try:
        h.produce(3000, "--invalid-ratio", "0.05")
        weir = h.start("weir")
        dead = h.acks()
        expected_dead = sum(1 for a in dead if "invalid" in a)
        assert expected_dead > 0
        h.wait_for("SELECT count(*) FROM weir_dead_letters", expected_dead, timeout=120,
                   alive=[weir])
        # Wait for the poller to have sampled the caught-up state the page will show.
        status = eventually(
            lambda: (s := get(f"{base}/status.json")[1]) and s["totals"]["partitions"] == 12
            and s["totals"]["lag"] == 0 and s["totals"]["dead_letters"] == expected_dead and s,
            60, "status.json caught up")
        page = chromium("--virtual-time-budget=5000", "--dump-dom", f"{base}/status")
        assert page.returncode == 0, page.stderr[-2000:]
        dom = page.stdout
        assert shown(dom, "partitions") == "12"
        assert shown(dom, "total-lag") == "0"
        assert shown(dom, "dead-letters") == str(expected_dead)
        assert shown(dom, "paused") == "0"
        assert shown(dom, "ready") == "ready"
        rows = re.findall(r'<tr data-tp="([^"$]+)"', dom)  # not the JS template itself
        assert rows == [f"{p['topic']}:{p['partition']}" for p in status["partitions"]]
        shot = tmp_path / "status.png"
        taken = chromium("--virtual-time-budget=5000", "--window-size=1000,760",
                         f"--screenshot={shot}", f"{base}/status")
        assert taken.returncode == 0, taken.stderr[-2000:]
        assert shot.stat().st_size > 10_000
        weir.send_signal(signal.SIGTERM)
        assert weir.wait(60) == 0
    finally:
        h.cleanup()
