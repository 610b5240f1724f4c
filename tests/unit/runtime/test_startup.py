"""Start-up's waiting, with scripted attempts: what is waited for and said, what stops at
once naming the setting to fix, and what passes through as Weir's own error."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiokafka.errors import AuthenticationFailedError, KafkaConnectionError
from structlog.testing import capture_logs

from processor.core.errors import MigrationRequired
from processor.core.settings import PostgresSettings, Settings, TopicSettings
from processor.runtime.startup import (
    StartupRefused,
    StartupState,
    wait_for_kafka,
    wait_for_postgres,
)


def settings() -> Settings:
    return Settings(event_types={}, topics=[TopicSettings(name="orders", type_field="type")],
                    postgres=PostgresSettings(dsn="postgresql://weir@db.example:6543/events",
                                              start_retry_max_s=0.01))


class Attempts:
    """Raises each of ``errors`` in turn, then answers ``done``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_a_server_not_there_yet_is_waited_for_and_each_wait_said() -> None:
    state = StartupState()
    attempt = Attempts(ConnectionRefusedError(111, "refused"), TimeoutError())
    with capture_logs() as logs:
        assert await wait_for_postgres(settings(), attempt, state=state) == "done"
    waits = [e for e in logs if e["event"] == "waiting for PostgreSQL"]
    assert [(e["host"], e["port"], e["database"], e["attempt"]) for e in waits] == [
        ("db.example", 6543, "events", 1), ("db.example", 6543, "events", 2)]
    assert "connection refused" in waits[0]["error"]
    assert "no answer in time" in waits[1]["error"]
    assert state.waiting_for == "PostgreSQL"
    assert state.last_error == "TimeoutError"


@pytest.mark.parametrize(("refusal", "setting"), [
    (asyncpg.InvalidPasswordError("password authentication failed"), "postgres.password"),
    (asyncpg.InvalidCatalogNameError('database "events" does not exist'),
     "postgres.dsn (the database name)"),
])
async def test_a_refusal_stops_at_once_naming_the_setting(refusal: Exception,
                                                          setting: str) -> None:
    attempt = Attempts(refusal)
    with pytest.raises(StartupRefused) as info:
        await wait_for_postgres(settings(), attempt)
    assert attempt.calls == 1
    assert str(info.value).startswith("PostgreSQL at db.example:6543 (database events) "
                                      "refused Weir: ")
    assert f"Fix {setting}" in str(info.value)


async def test_weirs_own_fatal_error_passes_through_with_its_message() -> None:
    attempt = Attempts(MigrationRequired("run `weir migrate` first"))
    with pytest.raises(MigrationRequired):
        await wait_for_postgres(settings(), attempt)


async def test_a_stall_is_not_waited_for_at_start() -> None:
    denied = asyncpg.InsufficientPrivilegeError("permission denied for schema weir")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await wait_for_postgres(settings(), Attempts(denied))


async def test_kafka_is_waited_for_and_its_refusal_names_the_security_settings() -> None:
    assert await wait_for_kafka(settings(), Attempts(KafkaConnectionError("no broker"))) \
        == "done"
    with pytest.raises(StartupRefused) as info:
        await wait_for_kafka(settings(), Attempts(AuthenticationFailedError()))
    assert "kafka.sasl_password" in str(info.value)
