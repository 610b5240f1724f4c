"""``weir cdc-contract``: a mirror's contract from the schema its change events carry.

Debezium's change events, through Kafka Connect's JSON converter with its schemas on, carry
the Connect schema of the captured table's row. This reads the newest change event on a
topic that has one and writes the JSON Schema contract
:func:`processor.core.debezium_types.contract_of` derives from it: the contract the
mirror's ``schema_file`` names. A column added at the source appears in the events that
follow; running this again and then ``weir migrate`` adds it to the mirror (a new optional
field is an additive change).
"""

from __future__ import annotations

from typing import Any

from processor.core.debezium_types import contract_of, record_struct
from processor.core.settings import Settings
from processor.decode.change_topics import NEWEST, newest_changes


class NoSchema(Exception):
    """The topic has no change event with an embedded schema to derive a contract from."""


async def newest_schema(settings: Settings, topic: str) -> dict[str, Any]:
    """The envelope schema of the newest change event on ``topic`` that has one."""
    found = (await newest_changes(settings, [topic])).get(topic)
    if found is None:
        raise NoSchema(
            f"no change event with an embedded schema among the newest {NEWEST} records of "
            f"each partition of {topic!r} (or no such topic): is the value converter's "
            "schemas.enable on?")
    return found.schema


def contract_for(schema: dict[str, Any], topic: str) -> dict[str, Any]:
    """The mirror's contract from an envelope schema."""
    after = record_struct(schema, "after")
    if after is None:
        raise NoSchema(f"the newest schema on {topic!r} has no 'after' struct: not a "
                       "Debezium change event")
    return contract_of(after, title=f"{topic} (from its change events' schema)")

