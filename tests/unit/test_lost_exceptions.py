"""The suite's own guard: a test whose task raised and was never awaited fails."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytest_plugins = ["pytester"]

LOST = '''
import asyncio

async def test_drops_a_failing_task() -> None:
    async def boom() -> None:
        raise RuntimeError("lost one")
    asyncio.ensure_future(boom())
    await asyncio.sleep(0.01)

async def test_awaits_its_tasks() -> None:
    async def fine() -> int:
        return 1
    assert await asyncio.ensure_future(fine()) == 1
'''


def test_a_lost_exception_fails_the_test_that_lost_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_lost=LOST)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*Task exception was never retrieved*lost one*"])
