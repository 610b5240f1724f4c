"""The pure diff behind `weir migrate` on existing tables: what it adds, what it refuses."""

from pathlib import Path

import pytest

from processor.contracts import Column, Contract, load_contracts
from processor.core.row_layout import META_NAMES
from processor.core.settings import load_settings
from processor.schema.evolution import (
    Evolution,
    ExistingTable,
    SchemaIncompatible,
    canonical,
    check_rollup,
    evolve_target,
)
from processor.schema.tables import TableSpec, table_spec


@pytest.fixture
def order(example_config: Path) -> tuple[Contract, TableSpec]:
    settings = load_settings(example_config)
    contract = load_contracts(settings)["order"]
    return contract, table_spec(contract, settings)


def as_existing(contract: Contract, spec: TableSpec, *, drop: tuple[str, ...] = (),
                **changed: tuple[str, bool]) -> ExistingTable:
    """The table `weir migrate` made for ``contract``, minus ``drop``, with ``changed``."""
    columns = {c.name: (canonical(c.pg_type), not c.nullable) for c in contract.columns
               if c.name not in drop}
    columns |= dict.fromkeys(META_NAMES, ("x", True))
    columns |= changed
    return ExistingTable(spec.name, columns, spec.key, spec.partitioned, spec.interval)


def test_the_same_table_needs_nothing(order: tuple[Contract, TableSpec]) -> None:
    contract, spec = order
    out = Evolution()
    evolve_target(as_existing(contract, spec), contract, spec, out)
    assert out == Evolution()


def test_a_new_optional_field_is_a_new_nullable_column(
        order: tuple[Contract, TableSpec]) -> None:
    contract, spec = order
    out = Evolution()
    evolve_target(as_existing(contract, spec, drop=("channel",)), contract, spec, out)
    assert out.problems == []
    assert out.statements == [
        'ALTER TABLE "weir_example"."orders" ADD COLUMN IF NOT EXISTS "channel" text']


def test_a_field_no_longer_required_drops_not_null(order: tuple[Contract, TableSpec]) -> None:
    contract, spec = order
    out = Evolution()
    existing = as_existing(contract, spec, channel=("text", True), gone=("text", True))
    evolve_target(existing, contract, spec, out)
    assert out.problems == []
    assert out.statements == [
        'ALTER TABLE "weir_example"."orders" ALTER COLUMN "channel" DROP NOT NULL',
        'ALTER TABLE "weir_example"."orders" ALTER COLUMN "gone" DROP NOT NULL',
    ]


def test_a_type_change_is_refused_naming_table_and_column(
        order: tuple[Contract, TableSpec]) -> None:
    contract, spec = order
    out = Evolution()
    evolve_target(as_existing(contract, spec, amount=("text", True)), contract, spec, out)
    assert out.problems == [
        "table orders, column amount: type changes from text to numeric; written rows and "
        "running writers still use the old type: add a field with a new name instead"]


def test_a_new_required_field_is_refused(order: tuple[Contract, TableSpec]) -> None:
    contract, spec = order
    required = Contract(**{**{f: getattr(contract, f) for f in Contract.__slots__},
                           "columns": (*contract.columns, Column("coupon", "text", False))})
    out = Evolution()
    evolve_target(as_existing(contract, spec), required, spec, out)
    assert len(out.problems) == 1
    assert out.problems[0].startswith("table orders, column coupon: a new required field")
    assert out.statements == []


def test_key_and_partitioning_changes_are_refused(order: tuple[Contract, TableSpec]) -> None:
    contract, spec = order
    plain = ExistingTable("orders", as_existing(contract, spec).columns, ("event_id",))
    out = Evolution()
    evolve_target(plain, contract, spec, out)
    assert [p.split(":")[1].split(",")[0].strip() for p in out.problems] == [
        "is not partitioned", "its primary key is (event_id)"]
    monthly = ExistingTable("orders", plain.columns, spec.key, True, "month")
    out = Evolution()
    evolve_target(monthly, contract, spec, out)
    assert out.problems == ["table orders: is partitioned by month, the configuration asks "
                            "for day; partitions of both would overlap"]


def test_a_rollup_may_not_change_its_columns(order: tuple[Contract, TableSpec]) -> None:
    _, spec = order
    (rollup,) = spec.rollups
    out = Evolution()
    check_rollup(ExistingTable(rollup.table, {"minute": ("timestamp with time zone", True),
                                              "orders": ("bigint", True)}), rollup, out)
    assert "declare a rollup under a new table name" in out.problems[0]


def test_the_error_lists_every_problem() -> None:
    err = SchemaIncompatible(["table a, column b: why", "table c: why not"])
    assert str(err) == ("incompatible schema change, nothing was changed:\n"
                        "  - table a, column b: why\n  - table c: why not")
