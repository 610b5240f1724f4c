"""Shared fixtures: paths of the repository's example config and schemas, and a check that
no asyncio task of a test lost an exception."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def example_config() -> Path:
    """The example pipeline's config file."""
    return ROOT / "config" / "example.yaml"


@pytest.fixture(autouse=True)
def no_lost_exceptions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Async tests only (the others have no loop): :func:`_watch_the_loop`."""
    if request.node.get_closest_marker("asyncio") is None:
        yield
        return
    request.getfixturevalue("_watch_the_loop")
    yield


@pytest_asyncio.fixture
async def _watch_the_loop() -> AsyncIterator[None]:
    """Fail the test whose event loop reported an unhandled exception.

    A task that raised and was never awaited only says so to the loop's exception handler
    (as it is collected), which would otherwise print it and let the test pass: a lost
    exception must not hide in the suite.
    """
    loop = asyncio.get_running_loop()
    lost: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: lost.append(context))
    try:
        yield
        gc.collect()  # tasks dropped by the test report their exception when collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not lost, "unhandled exceptions in the test's tasks: " + "; ".join(
        f"{c.get('message')}: {c.get('exception')!r}" for c in lost)
