import asyncio

import asyncpg
import pytest

from processor.sink.breaker import CircuitBreaker, State


async def fail() -> None:
    raise asyncpg.CannotConnectNowError("starting up")


async def reject() -> None:
    raise asyncpg.CheckViolationError("bad row")


async def ok() -> str:
    return "ok"


async def test_opens_after_consecutive_transient_failures_and_closes_on_a_good_probe() -> None:
    breaker = CircuitBreaker("t-open", failures=3, open_s=0.05)
    for _ in range(3):
        with pytest.raises(asyncpg.CannotConnectNowError):
            await breaker.call(fail)
    assert breaker.state is State.OPEN
    assert await breaker.call(ok) == "ok"  # waits out the open period, probes, closes
    assert breaker.state is State.CLOSED


async def test_a_failed_probe_opens_it_again() -> None:
    breaker = CircuitBreaker("t-probe", failures=1, open_s=0.05)
    with pytest.raises(asyncpg.CannotConnectNowError):
        await breaker.call(fail)
    with pytest.raises(asyncpg.CannotConnectNowError):
        await breaker.call(fail)  # the probe
    assert breaker.state is State.OPEN


async def test_a_rejected_row_is_an_answer_not_an_outage() -> None:
    breaker = CircuitBreaker("t-reject", failures=2, open_s=10)
    with pytest.raises(asyncpg.CannotConnectNowError):
        await breaker.call(fail)
    with pytest.raises(asyncpg.CheckViolationError):
        await breaker.call(reject)
    with pytest.raises(asyncpg.CannotConnectNowError):
        await breaker.call(fail)
    assert breaker.state is State.CLOSED  # the count restarted after the answer


async def test_while_open_calls_wait_instead_of_hammering() -> None:
    breaker = CircuitBreaker("t-wait", failures=1, open_s=0.3)
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.CannotConnectNowError("down")

    with pytest.raises(asyncpg.CannotConnectNowError):
        await breaker.call(counted)
    waiting = [asyncio.create_task(breaker.call(ok)) for _ in range(5)]
    await asyncio.sleep(0.1)
    assert calls == 1
    assert not any(task.done() for task in waiting)
    assert await asyncio.gather(*waiting) == ["ok"] * 5
    assert breaker.state is State.CLOSED


async def test_a_cancelled_probe_leaves_the_circuit_open_for_the_next_probe() -> None:
    breaker = CircuitBreaker("t-cancel", failures=1, open_s=0.05)
    with pytest.raises(asyncpg.CannotConnectNowError):
        await breaker.call(fail)
    hang = asyncio.Event()
    probe = asyncio.ensure_future(breaker.call(hang.wait))
    await asyncio.sleep(0.1)  # past the open period: the hanging call is the probe
    assert breaker.state is State.HALF_OPEN
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is State.OPEN
    # The next caller probes at once instead of waiting on a probe that will never report.
    assert await asyncio.wait_for(breaker.call(ok), 1) == "ok"
    assert breaker.state is State.CLOSED


async def test_a_stall_is_an_answer_not_an_outage() -> None:
    async def denied() -> None:
        raise asyncpg.InsufficientPrivilegeError("permission denied")

    breaker = CircuitBreaker("t-denied", failures=1, open_s=10)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await breaker.call(denied)
    assert breaker.state is State.CLOSED
