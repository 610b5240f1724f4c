"""Many change topics, one entry: the mirrors ``cdc.mirrors`` finds by pattern.

Debezium writes one topic per captured table (``prefix.schema.table``). An entry of
``cdc.mirrors`` names a pattern of such topics; every topic that matches becomes a mirror
of its own, as if it had been configured by hand with ``envelope: debezium``:

- its table is named from the topic (``table: "{table}"`` by default), in lower case;
- its contract is derived from the newest change event's schema, embedded (JSON) or
  registered (Avro, ``format: avro``: that version is then the reader every change of the
  topic resolves to) (:func:`processor.core.debezium_types.contract_of`), its upsert key
  from that event's record key (the row's primary key); every column but the key's is
  nullable, so rows from before a column was added, or after one was dropped, still fit;
- its table is created, or evolved additively, by Weir itself before the pipeline starts.

A topic created later is picked up: :meth:`Mirrors.watch` looks every ``cdc.refresh_s``,
and restarts the pipeline (a graceful stop, then a new start in the same process) once a new
topic has a change event to derive its mirror from. A column added at the source reaches
the change events first: the decoder holds that change's partition, uncommitted
(:class:`processor.decode.debezium.ColumnsPending`), and the pipeline restarts with the new
field's column added, so no row is written without a value the source holds.

A topic that cannot be mirrored is left unread (its changes stay in Kafka) and said why,
in the log, ``weir cdc-mirrors`` and the metric ``weir_mirror_topics``: no change with a
schema yet, no primary key, a table name that is not one, two topics for one table, or a
column change that needs a new table (a type change; ``weir migrate``'s rules).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from processor.contracts import Contract, ContractError, Registered, load_contract
from processor.core import metrics
from processor.core.connections import connect
from processor.core.debezium_types import contract_of, record_struct
from processor.core.errors import describe
from processor.core.settings import (
    IDENTIFIER,
    EventTypeSettings,
    MirrorSettings,
    Settings,
    TopicSettings,
)
from processor.core.verdict import Verdict, verdict
from processor.deadletter.topic import ensure_dead_letter_topics
from processor.decode.change_topics import NewestChange, list_topics, newest_changes
from processor.runtime.startup import wait_for_kafka, wait_for_postgres
from processor.schema.evolution import SchemaIncompatible
from processor.schema.migrate import configured_tables, migrate
from processor.schema.migrate import plan as plan_migration

log = structlog.get_logger(__name__)

# Why a matched topic is not mirrored, by kind: waiting ones are looked at again each
# refresh; skipped ones need a change of configuration; refused ones, of the mirror's table.
WAITING, SKIPPED, REFUSED = "waiting", "skipped", "refused"


@dataclass(slots=True)
class Plan:
    """What the patterns make of the cluster's topics: the settings and contracts with every
    mirror added, and each matched topic not mirrored with the reason."""

    settings: Settings
    contracts: dict[str, Contract]
    mirrored: dict[str, str] = field(default_factory=dict)  # topic -> its event type (table)
    unmirrored: dict[str, tuple[str, str]] = field(default_factory=dict)  # topic -> kind, why


def matched(settings: Settings, topics: list[str]) -> dict[str, MirrorSettings]:
    """The topics a pattern of ``cdc.mirrors`` takes (the first that matches): not a topic
    configured by hand, nor a dead-letter topic."""
    explicit = {t.name for t in settings.topics}
    dead_letters = {settings.dead_letters.topic_for(t) for t in topics}
    found: dict[str, MirrorSettings] = {}
    for topic in topics:
        if topic in explicit or topic in dead_letters:
            continue
        mirror = next((m for m in settings.cdc.mirrors if m.matches(topic)), None)
        if mirror is not None:
            found[topic] = mirror
    return found


def plan(settings: Settings, contracts: Mapping[str, Contract],
         wanted: Mapping[str, MirrorSettings], newest: Mapping[str, NewestChange],
         noticed: Mapping[str, Mapping[str, Mapping[str, Any]]],
         refused: Mapping[str, str]) -> Plan:
    """Each wanted topic as a mirror, or the reason it is not one. ``noticed``: per table,
    fields seen in its changes (with their Connect schema) that the newest one may lack;
    ``refused``: topics whose table cannot take their contract."""
    out = Plan(settings, dict(contracts))
    taken = {*configured_tables(settings), *settings.event_types,
             settings.postgres.offsets_table, settings.postgres.dead_letter_table}
    tables: dict[str, list[str]] = collections.defaultdict(list)
    for topic, mirror in wanted.items():
        table = mirror.table_for(topic)
        if not IDENTIFIER.match(table):
            out.unmirrored[topic] = (SKIPPED, f"its table name {table!r} is not a lower-case "
                                     "SQL identifier of at most 63 characters: set "
                                     "cdc.mirrors[].table")
        elif table in taken:
            out.unmirrored[topic] = (SKIPPED, f"its table {table!r} is configured already")
        else:
            tables[table].append(topic)
    event_types: dict[str, EventTypeSettings] = {}
    topics: list[TopicSettings] = []
    for table, named in tables.items():
        if len(named) > 1:
            for topic in named:
                out.unmirrored[topic] = (SKIPPED, f"topics {sorted(named)} all name table "
                                         f"{table!r}: set cdc.mirrors[].table apart")
            continue
        topic = named[0]
        if topic in refused:
            out.unmirrored[topic] = (REFUSED, refused[topic])
            continue
        try:
            et, contract = _mirror(settings, table, topic, wanted[topic], newest.get(topic),
                                   noticed.get(table, {}))
        except _NotYet as exc:
            out.unmirrored[topic] = (WAITING, str(exc))
            continue
        except (ContractError, ValidationError, ValueError) as exc:
            out.unmirrored[topic] = (SKIPPED, f"its contract cannot be one: {exc}")
            continue
        event_types[table], out.contracts[table] = et, contract
        topics.append(TopicSettings(name=topic, event_type=table,
                                    format=wanted[topic].format))
        out.mirrored[topic] = table
    out.settings = settings.model_copy(update={
        "event_types": {**settings.event_types, **event_types},
        "topics": [*settings.topics, *topics]})
    return out


class _NotYet(Exception):
    """The topic has nothing yet to derive a mirror from."""


def _mirror(settings: Settings, table: str, topic: str, mirror: MirrorSettings,
            change: NewestChange | None, noticed: Mapping[str, Mapping[str, Any]]
            ) -> tuple[EventTypeSettings, Contract]:
    """A mirror's event type and its compiled contract."""
    if change is None:
        raise _NotYet(
            "no change event with an embedded schema among its newest records (none yet, "
            "or the value converter's schemas.enable is off)" if mirror.format == "json" else
            f"no change event in Avro whose envelope is registered under {topic}-value among "
            "its newest records (none yet, or another converter)")
    if not change.key:
        raise _NotYet("its changes have no record key: its table has no primary key (or "
                      "Debezium's message.key.columns) to mirror by")
    after = record_struct(change.schema, "after")
    assert after is not None  # newest_changes keeps only changes that have it
    fields = {f.get("field") for f in after.get("fields", ())
              if isinstance(f, dict)}
    extra = [f for name, f in noticed.items() if name not in fields]
    schema = contract_of({"fields": [*after.get("fields", ()), *extra]},
                         title=f"{topic} (from its change events' schema)", keys=change.key)
    missing = [k for k in change.key if k not in schema["properties"]]
    if missing:
        raise ValueError(f"its key's fields {missing} are not fields of its rows")
    et = EventTypeSettings(contract=schema, table=table, envelope="debezium",
                           write_mode="upsert", upsert_key=list(change.key),
                           key_field=change.key[0] if len(change.key) == 1 else None,
                           deletes=mirror.deletes, truncates=mirror.truncates)
    alone = settings.model_copy(update={"event_types": {table: et}})
    if change.reader is None:
        return et, load_contract(table, None, alone)
    # Avro: the newest change's envelope is the reader of every version of the subject.
    where = f"cdc.mirrors: {topic}-value (its newest change's schema)"
    return et, load_contract(table, None, alone,
                             Registered(schema, where, "AVRO", change.reader))


class Mirrors:
    """The mirrors of ``cdc.mirrors`` for one ``weir run``, across its restarts: what they
    are now, the fields noticed in their changes, the topics whose tables refused."""

    def __init__(self, settings: Settings, contracts: Mapping[str, Contract]) -> None:
        self._base = settings
        self._contracts = dict(contracts)
        self._noticed: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._refused: dict[str, str] = {}
        self.current: Plan | None = None

    @property
    def evolving(self) -> frozenset[str]:
        """The event types of the mirrors found by pattern."""
        return frozenset(self.current.mirrored.values()) if self.current else frozenset()

    async def prepare(self) -> Plan:
        """Find the mirrors and create or evolve their tables; waits, saying why, until at
        least one topic is to be read."""
        while True:
            found = await self.find()
            found = await self.settle(found)
            self.current = found
            self._report(found)
            if found.settings.topics:
                return found
            log.warning("no change topic to mirror yet; looking again",
                        patterns=[m.topics for m in self._base.cdc.mirrors],
                        retry_in_s=self._base.cdc.refresh_s)
            await asyncio.sleep(self._base.cdc.refresh_s)

    async def find(self, only: list[str] | None = None) -> Plan:
        """What the patterns make of the cluster's topics now (``only`` these), tables
        untouched."""
        s = self._base
        topics = await wait_for_kafka(s, lambda: list_topics(s), "Kafka (change topics)")
        wanted = matched(s, topics)
        if only is not None:
            wanted = {t: m for t, m in wanted.items() if t in only}
        read = [t for t in wanted if t not in self._refused]
        newest = await wait_for_kafka(
            s, lambda: newest_changes(s, read, {t for t in read
                                                if wanted[t].format == "avro"}),
            "Kafka (the newest change of each topic)")
        return plan(s, self._contracts, wanted, newest, self._noticed, self._refused)

    async def settle(self, found: Plan, apply: bool = True) -> Plan:
        """Create or evolve each mirror's table (with ``apply`` off, only check that it
        could); one that cannot take its contract is refused (its topic left unread) and
        the others go on."""
        conn = await wait_for_postgres(self._base, lambda: connect(self._base),
                                       "PostgreSQL (mirrors' tables)")
        try:
            for topic, name in found.mirrored.items():
                alone = found.settings.model_copy(update={
                    "event_types": {name: found.settings.event_types[name]},
                    "topics": [t for t in found.settings.topics if t.name == topic]})
                try:
                    await (migrate if apply else plan_migration)(
                        conn, alone, {name: found.contracts[name]})
                except SchemaIncompatible as exc:
                    self._refused[topic] = f"its table cannot take the change: {exc}"
                if apply and topic in self._refused:
                    log.error("a mirror's table cannot take its change events' columns; its "
                              "topic is not read", topic=topic, table=name,
                              error=self._refused[topic])
        finally:
            await conn.close()
        for topic in [t for t in found.mirrored if t in self._refused]:
            found = _without(found, topic, self._refused[topic])
        if apply and self._base.dead_letters.topic_enabled:
            # As `weir migrate` makes them for the topics configured by hand.
            await wait_for_kafka(self._base, lambda: ensure_dead_letter_topics(found.settings),
                                 "Kafka (the mirrors' dead-letter topics)")
        return found

    def _report(self, found: Plan) -> None:
        counts = collections.Counter(kind for kind, _ in found.unmirrored.values())
        metrics.MIRROR_TOPICS.labels("mirrored").set(len(found.mirrored))
        for kind in (WAITING, SKIPPED, REFUSED):
            metrics.MIRROR_TOPICS.labels(kind).set(counts[kind])
        for topic, (kind, why) in sorted(found.unmirrored.items()):
            log.warning("a change topic is not mirrored", topic=topic, state=kind, why=why)
        log.info("mirrors", topics=len(found.mirrored), tables=sorted(found.mirrored.values()))

    def notice(self, event_type: str, fields: dict[str, Any]) -> str:
        """A mirror's change has fields its table lacks: keep them for the next plan; the
        reason to restart the pipeline."""
        self._noticed.setdefault(event_type, {}).update(fields)
        return f"new columns in {event_type}: {', '.join(sorted(fields))}"

    async def watch(self, reload: Callable[[str], None]) -> None:
        """Every ``cdc.refresh_s``, look for matched topics not mirrored yet (not those
        skipped by configuration or refused); ``reload`` once one can be."""
        while True:
            await asyncio.sleep(self._base.cdc.refresh_s)
            current = self.current
            if current is None:
                continue
            try:
                topics = await list_topics(self._base)
                candidates = [t for t in matched(self._base, topics)
                              if t not in current.mirrored and t not in self._refused
                              and current.unmirrored.get(t, (WAITING, ""))[0] == WAITING]
                if not candidates:
                    continue
                ready = (await self.find(candidates)).mirrored
            except Exception as exc:
                if verdict(exc) is Verdict.FATAL:
                    raise
                # Kafka away, or anything else: the mirrors being read go on, and the next
                # look tries again.
                log.warning("could not look for new change topics; trying again",
                            error=describe(exc), verdict=verdict(exc).value,
                            retry_in_s=self._base.cdc.refresh_s)
                continue
            if ready:
                reload(f"new change topics to mirror: {', '.join(sorted(ready))}")
                return


def _without(found: Plan, topic: str, why: str) -> Plan:
    """``found`` without the mirror of ``topic``."""
    name = found.mirrored.pop(topic)
    found.unmirrored[topic] = (REFUSED, why)
    found.contracts.pop(name, None)
    found.settings = found.settings.model_copy(update={
        "event_types": {n: et for n, et in found.settings.event_types.items() if n != name},
        "topics": [t for t in found.settings.topics if t.name != topic]})
    return found

