"""aiokafka's prefetched partition data, freed as soon as aiokafka lets it go.

aiokafka keeps each partition's fetched records (up to ``kafka.max_partition_fetch_bytes``
of bytes) in a ``FetchResult`` until they are consumed. Its ``PartitionRecords`` reads them
through a generator that refers back to it: a reference cycle. When aiokafka drops a
result before its records are all read (the partition was paused by backpressure, sought,
or revoked), nothing frees that cycle but a full run of the cyclic garbage collector. Weir
runs few of those (``processor.runtime.gc_tuning``), the columnar path fewest, so while
PostgreSQL was slower than Weir and the lanes kept pausing partitions, the dropped results
piled up: 151 of them, about 1 MiB each, held Weir's RSS at 380 MiB late in a
10,000,000-event backlog (``docs/performance.md``).

:func:`install` makes aiokafka build its results as :class:`ClosingFetchResult`, which
breaks the cycle whenever it lets its records go, so reference counting frees them at once.
No record is read, skipped or reordered by this: aiokafka fetches a dropped partition's
records again from its position, as before.
"""

from __future__ import annotations

from typing import Any

from aiokafka.consumer import fetcher


def _release(records: Any) -> None:
    """Break ``records``' cycle with its generator (a ``PartitionRecords``, or None)."""
    if records is not None:
        records._records_iterator = None


class ClosingFetchResult(fetcher.FetchResult):  # type: ignore[misc]
    """aiokafka's ``FetchResult``, releasing its partition's records when it drops them
    (``_partition_records`` set to None) or is dropped itself."""

    _held: Any = None

    @property
    def _partition_records(self) -> Any:
        return self._held

    @_partition_records.setter
    def _partition_records(self, records: Any) -> None:
        if self._held is not records:
            _release(self._held)
        self._held = records

    def __del__(self) -> None:
        # Not in a cycle itself: runs as soon as aiokafka deletes it from its results.
        _release(self._held)


def install() -> None:
    """Have aiokafka's fetcher build :class:`ClosingFetchResult` (idempotent)."""
    fetcher.FetchResult = ClosingFetchResult
