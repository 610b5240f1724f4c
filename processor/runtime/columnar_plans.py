"""Which topics take the columnar path, decided once at start (and said in the log)."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import structlog

from processor.contracts import Contract
from processor.core.settings import FRAMED_FORMATS, Settings
from processor.decode.columnar import ColumnarPlan, Unsupported, compile_plan
from processor.schema.tables import TableSpec
from processor.transform.columnar import arrow_form, takes_unicode
from processor.transform.loader import load_transform

log = structlog.get_logger(__name__)

COLUMNAR_FORMATS = FRAMED_FORMATS | {"json"}


def columnar_plans(settings: Settings, contracts: Mapping[str, Contract],
                   specs: Mapping[str, TableSpec]) -> dict[str, ColumnarPlan]:
    """Topic → its event type's columnar plan, for the topics of one event type whose type
    can take the path; every other event type's reason is logged once.

    A framed topic (Avro, Protobuf, JSON through the registry) takes it as its events' JSON,
    the JSON its rows' ``raw`` holds (:meth:`~processor.decode.decoder.Decoder.json_view`).
    """
    plans: dict[str, ColumnarPlan] = {}
    for name, contract in contracts.items():
        loaded = [(ref, load_transform(ref)) for ref in settings.event_types[name].transforms]
        try:
            plans[name] = compile_plan(contract, specs[name],
                                       [(ref, arrow_form(t)) for ref, t in loaded], settings,
                                       unicode=all(takes_unicode(t) for _, t in loaded))
        except Unsupported as why:
            log.info("event type takes the row path", event_type=name, reason=str(why))
    chosen: dict[str, ColumnarPlan] = {}
    for t in settings.topics:
        plan = plans.get(t.event_type or "")
        if plan is None or t.format not in COLUMNAR_FORMATS:
            continue
        if t.format == "avro" and plan.inexact:
            # Avro's decimals are compared exactly by the row path, as floats here.
            log.info("topic takes the row path", topic=t.name, reason=(
                f"number fields {plan.inexact} have bounds that are not whole numbers"))
            continue
        chosen[t.name] = plan
    if chosen:
        # Arrow's default pool (jemalloc) keeps freed pages for reuse: on 300,000 events
        # the process peaked at 226 MB with it and 193 MB with the C library's, at the
        # same CPU (benchmarks/results/2026-12-07-ab-1121c1e-e93684a.md, docs/performance.md).
        pa.set_memory_pool(pa.system_memory_pool())
        log.info("topics take the columnar path", topics=sorted(chosen))
    return chosen
