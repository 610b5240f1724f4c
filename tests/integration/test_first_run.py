"""A clean first run on a fresh Kafka logs no error: a new group forming is start-up.

On a broker that has never had a consumer group, ``__consumer_offsets`` is created by the
first one, and aiokafka meanwhile logs "GroupCoordinatorNotAvailableError" at error and
"Marking the coordinator dead" at warning while it retries. Weir logs those at info (see
``processor/core/logs.py``), so a log alert does not page on a normal start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Harness
from tests.integration.servers import PrivateKafka


@pytest.fixture
def fresh_kafka() -> Iterator[PrivateKafka]:
    kafka = PrivateKafka().start()
    try:
        yield kafka
    finally:
        kafka.stop()


def test_a_first_run_on_a_fresh_kafka_logs_no_error(tmp_path: Path,
                                                    fresh_kafka: PrivateKafka) -> None:
    h = Harness(tmp_path, kafka={"bootstrap_servers": fresh_kafka.bootstrap})
    h.migrate()
    try:
        h.produce(100)
        run = h.start("first", "--until-caught-up")
        assert run.wait(180) == 0, h.why_exited(run)
        assert h.scalar("SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM "
                        "page_views)") > 0
        lines = h.log_lines("first")
        loud = [line for line in lines if line.get("level") in ("warning", "error")]
        assert loud == [], loud
        # The group did form through the expected retries, now said at info.
        forming = [line for line in lines if line.get("logger", "").startswith("aiokafka")]
        assert forming, "a fresh broker no longer makes aiokafka retry: check the test"
        assert {line["level"] for line in forming} == {"info"}
        assert h.not_json("first") == []
    finally:
        h.cleanup()
