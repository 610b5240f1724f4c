"""cdc.mirrors: which topics a pattern takes, and the mirror each becomes (pure logic; the
real source is in tests/integration/test_debezium_mirrors.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from processor.core.settings import MirrorSettings, Settings
from processor.decode.change_topics import NewestChange
from processor.runtime.mirrors import SKIPPED, WAITING, matched, plan

PG = "postgresql://weir:weir@127.0.0.1:5432/weir"


def settings(**extra: Any) -> Settings:
    return Settings(postgres={"dsn": PG}, cdc={"mirrors": [
        {"topics": r"shop\.public\..+", "deletes": "soft"}]}, **extra)


def change(*fields: tuple[str, str, bool], key: tuple[str, ...] = ("id",)) -> NewestChange:
    after = {"field": "after", "type": "struct", "optional": True, "fields": [
        {"field": name, "type": kind, "optional": optional}
        for name, kind, optional in fields]}
    return NewestChange({"type": "struct", "fields": [after]}, key, 1)


def test_a_pattern_takes_whole_names_not_dead_letter_topics_nor_topics_by_hand() -> None:
    s = settings(event_types={"o": {"contract": {"type": "object", "properties": {}},
                                    "table": "o"}},
                 topics=[{"name": "shop.public.orders", "event_type": "o"}])
    topics = ["shop.public.a", "shop.public.a.dlq", "shop.public.orders", "xshop.public.b",
              "shop.public"]
    assert list(matched(s, topics)) == ["shop.public.a"]


@pytest.mark.parametrize(("template", "topic", "table"), [
    ("{table}", "shop.public.Orders", "orders"),
    ("{schema}_{table}", "shop.sales.line-items", "sales_line_items"),
    ("m_{prefix}_{table}", "shop.public.a", "m_shop_a"),
    ("{topic}", "shop.public.a", "shop_public_a"),
])
def test_a_table_is_named_from_its_topic(template: str, topic: str, table: str) -> None:
    assert MirrorSettings(topics=".*", table=template).table_for(topic) == table


def test_a_template_or_pattern_that_cannot_be_is_refused() -> None:
    with pytest.raises(ValidationError, match="only"):
        MirrorSettings(topics=".*", table="{database}")
    with pytest.raises(ValidationError, match="not a regular expression"):
        MirrorSettings(topics="(")


def test_each_topic_becomes_a_mirror_keyed_by_its_record_key() -> None:
    s = settings()
    wanted = matched(s, ["shop.public.a", "shop.public.b"])
    newest = {"shop.public.a": change(("id", "int32", False), ("v", "string", False)),
              "shop.public.b": change(("t", "int32", False), ("m", "int32", False),
                                      ("r", "string", True), key=("t", "m"))}
    found = plan(s, {}, wanted, newest, {}, {})
    assert found.mirrored == {"shop.public.a": "a", "shop.public.b": "b"}
    a, b = found.settings.event_types["a"], found.settings.event_types["b"]
    assert (a.envelope, a.upsert_key, a.key_field, a.deletes) == ("debezium", ["id"], "id",
                                                                  "soft")
    assert (b.upsert_key, b.key_field) == (["t", "m"], None)
    # Only the key is required: a row from before a column was added still fits.
    assert a.contract is not None
    assert a.contract["required"] == ["id"]
    assert [c.name for c in found.contracts["a"].columns][:2] == ["id", "v"]
    assert [t.name for t in found.settings.topics] == ["shop.public.a", "shop.public.b"]


def test_fields_noticed_in_changes_join_the_newest_schemas() -> None:
    """A field seen in a change the newest one lacks (dropped since) keeps its column."""
    s = settings()
    tier = {"field": "tier", "type": "string", "optional": True}
    found = plan(s, {}, matched(s, ["shop.public.a"]),
                 {"shop.public.a": change(("id", "int32", False))}, {"a": {"tier": tier}}, {})
    assert [c.name for c in found.contracts["a"].columns][:2] == ["id", "tier"]


def test_what_cannot_be_a_mirror_is_said_why() -> None:
    s = settings(event_types={"o": {"contract": {"type": "object", "properties": {}},
                                    "table": "taken"}},
                 topics=[{"name": "other", "event_type": "o"}])
    topics = ["shop.public.nokey", "shop.public.empty", "shop.public.taken",
              "shop.public.x-y", "shop.other.x_y", "shop.public." + "l" * 64]
    s = s.model_copy(update={"cdc": s.cdc.model_copy(update={"mirrors": [
        MirrorSettings(topics=r"shop\..+")]})})
    newest = {"shop.public.nokey": change(("id", "int32", False), key=())}
    found = plan(s, {}, matched(s, topics), newest, {}, {})
    assert not found.mirrored
    why = found.unmirrored
    assert why["shop.public.nokey"][0] == WAITING
    assert "no primary key" in why["shop.public.nokey"][1]
    assert why["shop.public.empty"][0] == WAITING
    assert why["shop.public.taken"] == (SKIPPED, "its table 'taken' is configured already")
    assert why["shop.public.x-y"][0] == SKIPPED
    assert "all name table 'x_y'" in why["shop.other.x_y"][1]
    assert "not a lower-case SQL identifier" in why["shop.public." + "l" * 64][1]


def test_without_topics_a_pattern_is_enough() -> None:
    settings()  # no error: topics may be empty with cdc.mirrors
    with pytest.raises(ValidationError, match="at least one source topic"):
        Settings(postgres={"dsn": PG})


ENVELOPE = {"type": "record", "name": "Envelope", "namespace": "shop.public.a", "fields": [
    {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
        {"name": "id", "type": "int"},
        {"name": "born", "type": ["null", {"type": "int",
                                           "connect.name": "io.debezium.time.Date"}]}]}],
     "default": None},
    {"name": "after", "type": ["null", "Value"], "default": None},
    {"name": "op", "type": "string"}]}


def test_an_avro_mirror_reads_every_version_as_its_newest_envelope() -> None:
    """format avro: the mirror's columns from the registered envelope's after record, read
    back as Connect's types, and that envelope the reader its events resolve to."""
    s = Settings(postgres={"dsn": PG}, schema_registry={"url": "http://127.0.0.1:8081"},
                 cdc={"mirrors": [{"topics": r"shop\.public\..+", "format": "avro"}]})
    from processor.core.debezium_types import connect_schema_of_avro
    newest = {"shop.public.a": NewestChange(connect_schema_of_avro(ENVELOPE), ("id",), 1,
                                            ENVELOPE)}
    found = plan(s, {}, matched(s, ["shop.public.a"]), newest, {}, {})
    assert found.mirrored == {"shop.public.a": "a"}
    [topic] = found.settings.topics
    assert topic.format == "avro"
    contract = found.contracts["a"]
    assert (contract.registry_type, contract.reader) == ("AVRO", ENVELOPE)
    assert {c.name: c.pg_type for c in contract.columns if c.name in ("id", "born")} == {
        "id": "integer", "born": "date"}
    # Nothing to derive it from yet: said in the format's terms.
    waiting = plan(s, {}, matched(s, ["shop.public.b"]), {}, {}, {})
    assert "registered under shop.public.b-value" in waiting.unmirrored["shop.public.b"][1]


def test_an_avro_mirror_needs_the_registry() -> None:
    with pytest.raises(ValidationError, match=r"schema_registry\.url is required"):
        Settings(postgres={"dsn": PG}, cdc={"mirrors": [{"topics": "x", "format": "avro"}]})
