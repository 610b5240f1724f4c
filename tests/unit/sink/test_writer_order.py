"""The batch transaction takes what other lanes wait for last: the rollup's buckets.

Every lane's batch adds to the rollup's current bucket and a row lock is held until COMMIT,
so the rollup-bearing INSERT comes after every COPY, every other table's INSERT, the dead
letters and the lane's own offsets rows (see ``processor/sink/writer.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from processor.contracts import load_contracts
from processor.core.offsets import OffsetStore
from processor.core.settings import load_settings
from processor.schema.tables import table_spec
from processor.sink.writer import BatchWriter


class Recorder:
    """Stands in for a pooled connection and remembers what the writer asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def copy_records_to_table(self, table: str, **_: Any) -> None:
        self.calls.append(f"COPY {table}")

    async def execute(self, sql: str, *_: Any) -> None:
        self.calls.append(sql)

    async def executemany(self, sql: str, _: Any) -> None:
        self.calls.append(sql)


def test_the_rollup_bearing_insert_is_the_last_statement(example_config: Path) -> None:
    settings = load_settings(example_config)
    specs = {name: table_spec(c, settings) for name, c in load_contracts(settings).items()}
    writer = BatchWriter(None, settings, specs, OffsetStore(settings))  # type: ignore[arg-type]
    conn = Recorder()
    # Orders first in the batch, as when its first event is an order.
    rows: dict[str, list[tuple[Any, ...]]] = {"order": [("o",)], "page_view": [("p",)]}
    asyncio.run(writer._statements(conn, rows, {}, [], 0, {("weir.orders", 0): 10}))
    kinds = ["copy" if c.startswith("COPY") else
             "rollup" if "orders_per_minute" in c else
             "offsets" if "weir_offsets" in c else
             "page_views" if '"page_views"' in c else c for c in conn.calls]
    assert kinds == ["copy", "copy", "page_views", "offsets", "rollup"]


def test_without_a_rollup_the_offsets_still_come_after_the_rows(example_config: Path) -> None:
    settings = load_settings(example_config)
    specs = {name: table_spec(c, settings) for name, c in load_contracts(settings).items()}
    writer = BatchWriter(None, settings, {"page_view": specs["page_view"]},  # type: ignore[arg-type]
                         OffsetStore(settings))
    conn = Recorder()
    asyncio.run(writer._statements(conn, {"page_view": [("p",)]}, {}, [], 0,
                                   {("weir.page_views", 0): 10}))
    assert [c.split(" ", 1)[0] for c in conn.calls] == ["COPY", "INSERT", "INSERT"]
    assert "weir_offsets" in conn.calls[-1]
