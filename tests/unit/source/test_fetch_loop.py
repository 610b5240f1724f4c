"""The fetch loop's logic, with a scripted source: faults waited out through the one retry
policy, a fatal verdict raised, a stop ending a retry, and ``--until-caught-up``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from structlog.testing import capture_logs

from processor.source.fetch import FetchLoop


class ScriptedSource:
    """Each fetch takes the next step: an exception to raise, or what to return."""

    def __init__(self, steps: list[Any], at_end: bool = False) -> None:
        self.steps = steps
        self.at_end = at_end
        self.fetches = 0

    async def fetch(self) -> Any:
        self.fetches += 1
        step = self.steps.pop(0) if self.steps else []
        if isinstance(step, BaseException):
            raise step
        await asyncio.sleep(0)
        return step

    async def caught_up(self) -> bool:
        return self.at_end and not self.steps


def loop(source: ScriptedSource, stopping: asyncio.Event, idle: bool = True,
         stop: Callable[[str], None] | None = None) -> tuple[FetchLoop, asyncio.Queue[Any]]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    fetch = FetchLoop(source, queue, stopping, pace=lambda: None,  # type: ignore[arg-type]
                      idle=lambda: idle, request_stop=stop or (lambda _: stopping.set()))
    return fetch, queue


def drained(queue: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processor.core.retry.Backoff.delay", lambda self, attempt: 0.001)


async def test_faults_are_waited_out_and_each_fetch_is_handed_on_in_order() -> None:
    stopping = asyncio.Event()
    a, b = [("p", [1])], [("p", [2])]
    source = ScriptedSource([KafkaConnectionError("down"), TopicAuthorizationFailedError(),
                             a, KafkaConnectionError("again"), b], at_end=True)
    fetch, queue = loop(source, stopping)
    with capture_logs() as logs:
        await asyncio.wait_for(fetch.run(until_caught_up=True), 5)
    assert drained(queue) == [a, b, None]  # the end mark last
    failed = [entry for entry in logs if entry["event"] == "fetch failed; trying again"]
    # A stall verdict (an authorization to grant) is waited out too, never a stop.
    assert [entry["verdict"] for entry in failed] == ["retry", "stall", "retry"]
    assert fetch.consumed == 2


async def test_a_fatal_verdict_stops_the_loop() -> None:
    source = ScriptedSource([KafkaConnectionError("down"), AuthenticationFailedError()])
    fetch, _ = loop(source, asyncio.Event())
    with pytest.raises(AuthenticationFailedError):
        await asyncio.wait_for(fetch.run(), 5)
    assert source.fetches == 2


async def test_a_stop_ends_a_retry_without_another_fetch() -> None:
    stopping = asyncio.Event()
    class StopOnThird(ScriptedSource):
        async def fetch(self) -> Any:
            if self.fetches == 2:
                stopping.set()  # asked to stop while the faults go on
            return await super().fetch()

    source = StopOnThird([KafkaConnectionError("down")] * 1000)
    fetch, queue = loop(source, stopping)
    running = asyncio.ensure_future(fetch.run())
    await asyncio.wait_for(running, 5)
    assert drained(queue) == [None]
    assert source.fetches == 3  # the stop ended the retries: no fetch after it


async def test_until_caught_up_waits_for_the_pipeline_to_be_idle() -> None:
    stopping = asyncio.Event()
    asked: list[str] = []
    source = ScriptedSource([[("p", [1])]], at_end=True)
    fetch, _ = loop(source, stopping, idle=False, stop=asked.append)
    running = asyncio.ensure_future(fetch.run(until_caught_up=True))
    await asyncio.sleep(0.05)
    assert asked == []  # caught up in Kafka, but events still on their way to PostgreSQL
    stopping.set()
    await asyncio.wait_for(running, 5)
