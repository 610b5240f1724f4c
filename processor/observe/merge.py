"""One view of N workers: their metrics, status pages and readiness answers, merged.

Counters and histograms are summed over the workers: ``weir_events_written_total`` of the
parent is what all workers wrote. A worker that dies starts again from zero, which a plain
sum would show as a drop (and Prometheus' ``rate`` as a reset, counting everything again),
so each worker's last scraped values are carried over its restarts: the sum only grows.
Gauges are not summed (a lane depth, a lag per partition, a circuit state mean something
per process): each keeps a ``worker`` label.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from processor.observe.status import status_document

# Types whose samples only grow while a process lives: summed, and carried over restarts.
SUMMED = frozenset({"counter", "histogram", "summary"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


@dataclass(frozen=True, slots=True)
class Scrape:
    """One worker's ``/metrics`` answer, and which process gave it."""

    worker: int
    pid: int
    text: str


@dataclass
class _Carry:
    pid: int | None = None
    base: dict[str, dict[SampleKey, float]] = field(default_factory=dict)  # dead processes
    last: dict[str, dict[SampleKey, float]] = field(default_factory=dict)  # current process

    def restarted(self, pid: int) -> None:
        if self.pid is not None and pid != self.pid:
            for family, samples in self.last.items():
                into = self.base.setdefault(family, {})
                for key, value in samples.items():
                    into[key] = into.get(key, 0.0) + value
            self.last = {}
        self.pid = pid


@dataclass
class _Family:
    documentation: str
    type: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


class MetricsMerger:
    """Keeps each worker's carried counters between scrapes."""

    def __init__(self) -> None:
        self._carry: dict[int, _Carry] = {}
        # Name -> (help, type) of every summed family seen, so a family whose workers
        # are all down for a moment is still exposed with its carried total.
        self._meta: dict[str, tuple[str, str]] = {}

    def merge(self, scrapes: list[Scrape], extra: list[Metric] | None = None) -> bytes:
        """The exposition text of all workers (those not answering count with their last
        values), plus ``extra`` families (the supervisor's own)."""
        gauges: dict[str, _Family] = {}
        for scrape in scrapes:
            carry = self._carry.setdefault(scrape.worker, _Carry())
            carry.restarted(scrape.pid)
            carry.last = {}
            for metric in text_string_to_metric_families(scrape.text):
                if metric.type in SUMMED:
                    self._meta[metric.name] = (metric.documentation, metric.type)
                    carry.last[metric.name] = {_key(s.name, s.labels): s.value
                                               for s in metric.samples}
                    continue
                family = gauges.setdefault(metric.name,
                                           _Family(metric.documentation, metric.type))
                for s in metric.samples:
                    labels = {**s.labels, "worker": str(scrape.worker)}
                    family.samples[_key(s.name, labels)] = s.value
        summed = {name: _Family(doc, kind) for name, (doc, kind) in self._meta.items()}
        for carry in self._carry.values():
            for part in (carry.base, carry.last):
                for name, samples in part.items():
                    total = summed[name].samples
                    for key, value in samples.items():
                        total[key] = total.get(key, 0.0) + value
        return _render([*_metrics({**summed, **gauges}), *(extra or [])])


def _key(name: str, labels: Mapping[str, str]) -> SampleKey:
    return name, tuple(sorted(labels.items()))


def _metrics(families: Mapping[str, _Family]) -> Iterator[Metric]:
    for name, family in families.items():
        metric = Metric(name, family.documentation, family.type)
        for (sample, labels), value in family.samples.items():
            metric.add_sample(sample, dict(labels), value)
        yield metric


class _Fixed:
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def _render(metrics: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(metrics))
    return generate_latest(registry)


def merge_status(statuses: Mapping[int, dict[str, Any] | None],
                 workers: list[dict[str, Any]]) -> dict[str, Any]:
    """``/status.json`` of every worker as one: all partitions, each with its worker."""
    answered = {i: s for i, s in statuses.items() if s is not None}
    parts = sorted(({**p, "worker": i} for i, s in answered.items() for p in s["partitions"]),
                   key=lambda p: (p["topic"], p["partition"]))
    totals = [s["totals"] for s in answered.values()]

    def summed(key: str) -> float:
        return float(sum(t.get(key, 0) for t in totals))

    return status_document(
        len(answered) == len(statuses) and all(s["ready"] for s in answered.values()),
        parts, lag=summed("lag"),
        max_lag_seconds=max((t.get("max_lag_seconds", 0.0) for t in totals), default=0.0),
        written_per_s=summed("written_per_s"), dead_letters=summed("dead_letters"),
        owned=summed("partitions"), paused=summed("paused"),
        mirrors=_merged_mirrors([m for s in answered.values() for m in s.get("mirrors", [])]),
        workers=workers)


def _merged_mirrors(mirrors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each mirror once: the workers' changes summed, the largest lag (each worker's is of
    its own latest commit)."""
    merged: dict[str, dict[str, Any]] = {}
    for m in mirrors:
        seen = merged.setdefault(m["event_type"], {**m, "changes": 0, "deletes": 0})
        seen["lag_seconds"] = max(seen["lag_seconds"], m["lag_seconds"])
        seen["changes"] += m["changes"]
        seen["deletes"] += m["deletes"]
    return [merged[name] for name in sorted(merged)]


def failing_checks(answer: Mapping[str, Any]) -> str:
    """The checks a worker's ``/readyz`` failed, as ``name: why`` for one error line."""
    checks = answer.get("checks", {})
    failed = [f"{name}: {c.get('error', 'not ok')}" for name, c in checks.items()
              if not c.get("ok")]
    return "; ".join(failed) or "not ready"
