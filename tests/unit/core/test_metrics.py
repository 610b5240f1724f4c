"""observe_many counts exactly what observe, one amount at a time, would count."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from processor.core.metrics import observe_many


def samples(h: Histogram) -> dict[str, float]:
    return {f"{s.name}{s.labels}": s.value for m in h.collect() for s in m.samples}


def test_observe_many_equals_observe_one_by_one() -> None:
    rand = random.Random(5)
    buckets = (0.01, 0.1, 0.25, 1, 10)
    one = Histogram("one", "", buckets=buckets, registry=CollectorRegistry())
    many = Histogram("many", "", buckets=buckets, registry=CollectorRegistry())
    for size in (0, 1, 7, 500):
        amounts = [rand.choice([0.0, 0.01, 0.1, 1, 10, 11]) if rand.random() < 0.3
                   else rand.uniform(0, 20) for _ in range(size)]
        for a in amounts:
            one.observe(a)
        observe_many(many, list(amounts))
        got = {k.replace("many", "one"): v for k, v in samples(many).items()}
        want = samples(one)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert abs(got[key] - value) < 1e-6, key


def test_a_committed_batch_counts_its_deletes_apart() -> None:
    from processor.core import metrics
    from processor.core.records import Chunk, Row

    chunk = Chunk(("t", 0), 0, 3)

    def row(tombstone: bool) -> Row:
        return Row("mirror", (1,), chunk, 1, None, [], 0, tombstone)

    written = metrics.EVENTS_WRITTEN.labels("mirror")._value.get()
    deleted = metrics.DELETES_WRITTEN.labels("mirror")._value.get()
    metrics.observe_batch([row(False), row(True), row(True)])
    assert metrics.EVENTS_WRITTEN.labels("mirror")._value.get() == written + 3
    assert metrics.DELETES_WRITTEN.labels("mirror")._value.get() == deleted + 2
