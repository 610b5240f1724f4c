"""Framed formats through the real schema registry, Kafka and PostgreSQL.

The same sample events go to one topic as JSON and to another in a registry format; each
topic has its own pipeline (its own schema and group). The framed pipeline is killed
mid-run and restarted; afterwards both tables hold every acknowledged event exactly once,
and row for row the same values.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from processor.commands.produce.encode import encoder
from processor.commands.produce.producer import ensure_topics
from processor.commands.produce.sample import SampleEvents
from processor.core.settings import Settings, load_settings
from tests.integration.conftest import KAFKA, REGISTRY, Harness

Sent = list[tuple[int, int]]  # (partition, offset) of every acknowledged record


def framed(tmp_path: Path, fmt: str, **overrides: Any) -> Harness:
    """A pipeline whose order topic is read in ``fmt`` through the registry."""
    h = Harness(tmp_path, partitions=4, schema_registry={"url": REGISTRY}, **overrides)
    h.rewrite(lambda config: config.update(
        topics=[{"name": h.topics["order"], "event_type": "order", "format": fmt}]))
    return h


def settings_of(h: Harness) -> Settings:
    return load_settings(h.config)


def publish(h: Harness, fmt: str, events: list[tuple[str, dict[str, Any]]],
            raw: Callable[[int, bytes], bytes] | None = None) -> Sent:
    """Send ``events`` (key, event) to ``h``'s order topic in ``fmt``; their coordinates."""
    settings = settings_of(h)
    topic = next(t for t in settings.topics if t.event_type == "order")
    encode = encoder(settings, topic, "order", fmt)

    async def go() -> Sent:
        await ensure_topics(settings, 4)
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all",
                                    enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            futures = []
            for i, (key, event) in enumerate(events):
                value = encode(event)
                if raw is not None:
                    value = raw(i, value)
                futures.append(await producer.send(topic.name, value, key=key.encode()))
            metas = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return [(m.partition, m.offset) for m in metas]

    return asyncio.run(go())


def sample_orders(n: int, seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    sample = SampleEvents(seed=seed, keys=50)
    return [sample.make("order") for _ in range(n)]


COLUMNS = ("event_id, customer_id, seq, occurred_at, order_id, status, amount, currency, "
           "items, channel, event_time, kafka_partition, kafka_offset")


def rows(h: Harness) -> dict[str, dict[str, Any]]:
    found = h.sql(f"SELECT {COLUMNS}, raw - 'occurred_at' AS raw_rest, "
                  "(raw->>'occurred_at')::timestamptz AS raw_time FROM orders")
    # raw as JSON values: 40.0 and 40.00 are one number (jsonb says so too).
    return {str(r["event_id"]): {**dict(r), "raw_rest": orjson.loads(r["raw_rest"])}
            for r in found}


@pytest.fixture(params=["avro", "protobuf", "jsonschema"])
def pair(request: pytest.FixtureRequest, tmp_path: Path
         ) -> Iterator[tuple[Harness, Harness, str]]:
    made: list[Harness] = []
    try:
        plain = Harness(tmp_path / "json", partitions=4)
        made.append(plain)
        avro = framed(tmp_path / request.param, request.param)
        made.append(avro)
        for h in made:
            h.migrate()
        yield plain, avro, request.param
    finally:
        for h in made:
            h.cleanup()


def test_a_framed_format_lands_exactly_once_and_equal_to_json(
        pair: tuple[Harness, Harness, str]) -> None:
    plain, avro, fmt = pair
    events = sample_orders(10_000)
    sent_json = publish(plain, "json", events)
    sent_avro = publish(avro, fmt, events)
    assert sent_json == sent_avro  # same keys, same partitions, same offsets

    first = avro.start("first")
    avro.wait_for("SELECT count(*) >= 3000 FROM orders", True, 120, alive=[first])
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    second = avro.start("second", "--until-caught-up")
    reference = plain.start("json", "--until-caught-up")
    assert second.wait(300) == 0, avro.why_exited(second)
    assert reference.wait(300) == 0, plain.why_exited(reference)

    # Exactly once: every acknowledged record is one row, nothing else is there.
    stored = avro.sql("SELECT kafka_partition, kafka_offset FROM orders")
    assert sorted((r[0], r[1]) for r in stored) == sorted(sent_avro)
    assert avro.scalar("SELECT count(*) FROM weir_dead_letters") == 0
    # Row for row the same values as the same events sent as JSON.
    want, got = rows(plain), rows(avro)
    assert len(want) == len(got) == len(events)
    assert want.keys() == got.keys()
    differing = {k: {c: (v, got[k][c]) for c, v in want[k].items() if v != got[k][c]}
                 for k in want if want[k] != got[k]}
    assert not differing, (len(differing), next(iter(differing.values())))
    # Decimals are exact, never a float's rounding.
    assert all(isinstance(r["amount"], Decimal) for r in got.values())
