"""``weir cdc-contract``: a mirror's contract from the schema its change events carry.

Debezium's change events, through Kafka Connect's JSON converter with its schemas on, carry
the Connect schema of the captured table's row. This reads the newest change event on a
topic that has one and writes the JSON Schema contract
:func:`processor.decode.debezium_types.contract_of` derives from it: the contract the
mirror's ``schema_file`` names. A column added at the source appears in the events that
follow; running this again and then ``weir migrate`` adds it to the mirror (a new optional
field is an additive change).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processor.core.connections import kafka_client
from processor.core.settings import Settings
from processor.decode.debezium_types import contract_of, record_struct

NEWEST = 200  # records read back per partition, past tombstones and schemaless records


class NoSchema(Exception):
    """The topic has no change event with an embedded schema to derive a contract from."""


async def newest_schema(settings: Settings, topic: str) -> dict[str, Any]:
    """The envelope schema of the newest change event on ``topic`` that has one."""
    admin = AIOKafkaAdminClient(**kafka_client(settings.kafka))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise NoSchema(f"topic {topic!r} does not exist (or has no partitions)")
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(**kafka_client(settings.kafka), enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        best: tuple[int, dict[str, Any]] | None = None
        for tp in tps:
            first = max(starts[tp], ends[tp] - NEWEST)
            if first >= ends[tp]:
                continue
            consumer.seek(tp, first)
            while (position := await consumer.position(tp)) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=5000)
                for record in batch.get(tp, []):
                    schema = _schema(record.value)
                    if schema is not None and (best is None or record.timestamp >= best[0]):
                        best = (record.timestamp, schema)
                if not batch and await consumer.position(tp) == position:
                    break  # nothing more within the wait: take what was read
    finally:
        await consumer.stop()
    if best is None:
        raise NoSchema(
            f"no change event with an embedded schema among the newest {NEWEST} records of "
            f"each partition of {topic!r}: is the value converter's schemas.enable on?")
    return best[1]


def contract_for(schema: dict[str, Any], topic: str) -> dict[str, Any]:
    """The mirror's contract from an envelope schema."""
    after = record_struct(schema, "after")
    if after is None:
        raise NoSchema(f"the newest schema on {topic!r} has no 'after' struct: not a "
                       "Debezium change event")
    return contract_of(after, title=f"{topic} (from its change events' schema)")


def _schema(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    schema = event.get("schema") if isinstance(event, dict) else None
    return schema if isinstance(schema, dict) and record_struct(schema, "after") else None
