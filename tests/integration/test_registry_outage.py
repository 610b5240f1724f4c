"""The schema registry stopped for 20 s mid-run while new schema ids appear.

Weir holds the partitions whose records name an id it has not fetched (they are paused),
says why on ``/readyz``, and goes on with everything else: the other partitions, and every
record whose schema it has cached, keep landing. No dead letter is written. Once the
registry is back, the held partitions resume by themselves; afterwards every acknowledged
event is a row, exactly once.

The test stops the stack's own registry (``scripts/stack.sh registry-stop``) and always
starts it again; its schemas and ids are kept on disk, so other tests are unaffected once
it is back.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from processor.commands.produce.encode import encoder
from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import SchemaRegistrySettings, load_settings
from processor.registry.client import RegistryClient
from tests.integration.conftest import KAFKA, REGISTRY, ROOT, Harness, base_env
from tests.integration.servers import free_port
from tests.integration.test_observability import eventually, get

HOLD_S = 20
PARTITIONS = 4


def _stack(command: str) -> None:
    done = subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), command], env=base_env(),
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def registry_restored() -> Iterator[None]:
    try:
        yield
    finally:
        _stack("registry-start")


def _v2(subject: str) -> int:
    """Version 2 of the example Avro order: one optional field more (a new schema id)."""
    schema = orjson.loads((ROOT / "schemas/order.avsc").read_bytes())
    schema["fields"].append({"name": "coupon", "type": ["null", "string"], "default": None})
    return RegistryClient(SchemaRegistrySettings(url=REGISTRY)).register(
        subject, orjson.dumps(schema).decode(), "AVRO")


async def _send(topic: str, records: list[tuple[bytes, bytes, int]]) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=partition)
                   for key, value, partition in records]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


def test_registry_away_holds_new_ids_only_then_resumes(tmp_path: Path,
                                                      registry_restored: None) -> None:
    port = free_port()
    h = Harness(tmp_path, partitions=PARTITIONS, schema_registry={"url": REGISTRY},
                metrics={"enabled": True, "port": port, "lag_interval_s": 0.5},
                postgres={"stall_retry_max_s": 2.0})
    topic = f"it.{uuid.uuid4().hex[:8]}.avro"
    h.topics = {"order": topic, "page_view": h.topics["page_view"]}
    h.rewrite(lambda config: config.update(
        topics=[{"name": topic, "event_type": "order", "format": "avro"}]))
    base = f"http://127.0.0.1:{port}"
    h.migrate()
    try:
        _outage(h, topic, base)
    finally:
        h.cleanup()


def _outage(h: Harness, topic: str, base: str) -> None:
    settings = load_settings(h.config)
    v1 = encoder(settings, settings.topics[0], "order", "avro")
    v2_id = _v2(f"{topic}-value")
    sample = SampleEvents(seed=9, keys=40)

    def batch(n: int, partition: int, new: bool = False) -> list[tuple[bytes, bytes, int]]:
        out = []
        for _ in range(n):
            key, event = sample.make("order")
            value = v1(event)
            if new:  # the same record under v2's id: v2's reader fills coupon with null
                value = value[:1] + v2_id.to_bytes(4, "big") + value[5:] + b"\x00"
            out.append((key.encode(), value, partition))
        return out

    asyncio.run(ensure_topics(settings, PARTITIONS))
    sent = asyncio.run(_send(topic, [r for p in range(PARTITIONS) for r in batch(250, p)]))
    weir = h.start("weir")
    h.wait_for("SELECT count(*) FROM orders", len(sent), 120, alive=[weir])

    _stack("registry-stop")
    stopped = time.monotonic()
    # Partition 0 gets records of an id Weir has never seen, then v1 records behind them;
    # the other partitions get v1 records only (cached).
    sent += asyncio.run(_send(topic, batch(200, 0, new=True) + batch(200, 0)))
    others = batch(300, 1) + batch(300, 2) + batch(300, 3)
    sent += asyncio.run(_send(topic, others))
    status = eventually(lambda: _not_ready(base), 60, "/readyz naming the schema registry")
    assert "schema registry" in status["checks"]["stalls"]["stalled"]
    # Cached ids keep flowing: all of the other partitions' new records land.
    h.wait_for("SELECT count(*) FROM orders WHERE kafka_partition <> 0", 750 + 900, 60,
               alive=[weir])
    assert h.scalar("SELECT count(*) FROM orders WHERE kafka_partition = 0") == 250
    _, metrics = get(f"{base}/metrics")
    assert 'weir_stalled{part="schema registry"} 1.0' in metrics
    time.sleep(max(0.0, HOLD_S - (time.monotonic() - stopped)))
    assert weir.poll() is None, h.why_exited(weir)
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0

    _stack("registry-start")
    h.wait_for("SELECT count(*) FROM orders", len(sent), 120, alive=[weir])
    # The held partition is fetched again: what comes next to it lands too.
    sent += asyncio.run(_send(topic, batch(100, 0)))
    h.wait_for("SELECT count(*) FROM orders", len(sent), 60, alive=[weir])
    eventually(lambda: get(f"{base}/readyz")[0] == 200, 60, "ready again")
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    stored = sorted((r[0], r[1]) for r in h.sql(
        "SELECT kafka_partition, kafka_offset FROM orders"))
    assert stored == sorted(sent)  # every acknowledged record once, nothing else
    # Partition 0's records landed in offset order after the hold: v2's then v1's.
    assert h.scalar("SELECT count(*) FROM orders WHERE raw ? 'coupon'") == 200
    weir.terminate()
    assert weir.wait(60) == 0
    events = [line.get("event", "") for line in h.log_lines("weir")]
    assert "stall over; resumed" in events


def _not_ready(base: str) -> dict[str, Any] | None:
    status, body = get(f"{base}/readyz")
    if status != 503 or not isinstance(body, dict):
        return None
    stalls = body["checks"].get("stalls", {})
    return body if "schema registry" in str(stalls.get("error", "")) else None
