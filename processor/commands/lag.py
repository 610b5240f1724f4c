"""``weir lag``: how far a group is behind, per topic-partition, without running the processor.

Two views side by side: the offsets stored in PostgreSQL with the rows (authoritative: what
is written) and the offsets committed to Kafka (what standard lag tools see). Two samples
some seconds apart give the rate at which the group writes and the time it needs to catch
up at that rate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, replace

from processor.commands.rewind import positions
from processor.core.progress import records_behind
from processor.core.settings import Settings


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Lag of one topic-partition; ``rate`` and ``eta_s`` need two samples."""

    topic: str
    partition: int
    end_offset: int
    stored_offset: int | None
    kafka_committed: int | None
    rate: float | None = None
    eta_s: float | None = None

    @property
    def lag(self) -> int:
        """Records not yet written (by the PostgreSQL offsets)."""
        return records_behind(self.end_offset, self.stored_offset)

    def as_dict(self) -> dict[str, int | float | str | None]:
        """For ``--json``."""
        return {**asdict(self), "lag": self.lag}


async def partition_lags(settings: Settings, group: str | None = None) -> list[PartitionLag]:
    """End offsets from Kafka, stored offsets from PostgreSQL, committed offsets from the group."""
    return [PartitionLag(p.topic, p.partition, p.log_end, p.stored, p.committed)
            for p in await positions(settings, group=group)]


def with_rates(before: list[PartitionLag], after: list[PartitionLag],
               seconds: float) -> list[PartitionLag]:
    """``after`` with the write rate since ``before`` and the time to catch up at that rate."""
    old = {(x.topic, x.partition): x.stored_offset or 0 for x in before}
    result = []
    for lag in after:
        rate = ((lag.stored_offset or 0) - old.get((lag.topic, lag.partition), 0)) / seconds
        eta = 0.0 if lag.lag == 0 else (lag.lag / rate if rate > 0 else None)
        result.append(replace(lag, rate=round(rate, 1), eta_s=None if eta is None
                              else round(eta, 1)))
    return result


async def sample_rates(settings: Settings, group: str | None,
                       interval_s: float) -> list[PartitionLag]:
    """Two samples ``interval_s`` apart."""
    first = await partition_lags(settings, group)
    started = time.monotonic()
    await asyncio.sleep(interval_s)
    second = await partition_lags(settings, group)
    return with_rates(first, second, time.monotonic() - started)


def render(lags: list[PartitionLag]) -> str:
    """A plain table for a terminal."""
    head = (f"{'topic':<24} {'part':>4} {'end':>10} {'stored':>10} {'kafka':>10} {'lag':>10}"
            f" {'rate/s':>9} {'eta':>8}")
    lines = [head, "-" * len(head)]
    lines += [
        f"{lag.topic:<24} {lag.partition:>4} {lag.end_offset:>10} "
        f"{_num(lag.stored_offset):>10} {_num(lag.kafka_committed):>10} {lag.lag:>10}"
        f" {_num(lag.rate):>9} {_eta(lag.eta_s):>8}"
        for lag in lags
    ]
    total_rate = sum(x.rate or 0 for x in lags)
    total_lag = sum(x.lag for x in lags)
    eta = 0.0 if total_lag == 0 else (total_lag / total_rate if total_rate > 0 else None)
    lines.append(f"{'total':<24} {'':>4} {'':>10} {'':>10} {'':>10} {total_lag:>10}"
                 f" {round(total_rate, 1):>9} {_eta(eta):>8}")
    return "\n".join(lines)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "never"  # behind and not moving
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _num(value: float | None) -> str:
    return "-" if value is None else str(value)
