"""A writer lane's buffer: bounded in rows and bytes, cut into batches by rows, bytes or linger.

Backpressure works one level up (``source/backpressure.py``): when a buffer reaches its
capacity, the partitions feeding it are paused, so only what was already fetched keeps
arriving. ``put`` blocks only at the hard limit, capacity plus that in-flight headroom, as a
safety net that pausing normally keeps out of reach. The consumer side (``take``) returns a
batch as soon as one bound is reached, or when the oldest waiting item has lingered long
enough. The linger counts from that item's arrival, not from when the lane came back for
more: items that arrived while the lane was writing have already waited, and waiting a full
linger on top of a write would add the write time to every event's latency.

Rows count events: a block of events decoded together counts as its rows, and is never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from processor.core.records import Item, TopicPartitionKey


class LaneBuffer:
    """Bounded FIFO of items for one writer lane."""

    def __init__(self, capacity_rows: int, capacity_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._oldest = 0.0  # when the oldest waiting item arrived (clock time)
        self._capacity_rows = capacity_rows
        self._capacity_bytes = capacity_bytes
        self._items: deque[Item] = deque()
        self._bytes = 0
        self._rows = 0  # events waiting: an item's rows (a Block's are many)
        self._changed = asyncio.Condition()
        self._closed = False
        self._flush_now = False

    @property
    def rows(self) -> int:
        """Events waiting."""
        return self._rows

    @property
    def nbytes(self) -> int:
        """Bytes waiting (sum of the items' Kafka value sizes)."""
        return self._bytes

    def partitions(self) -> set[TopicPartitionKey]:
        """The partitions with events waiting here (walked only when the lane fills)."""
        return {item.chunk.tp for item in self._items}

    def _fits(self, rows: int, nbytes: int) -> bool:
        # An empty buffer takes anything, so one oversized fetch cannot wedge the lane.
        if not self._items:
            return True
        return (self._rows + rows <= self._capacity_rows
                and self._bytes + nbytes <= self._capacity_bytes)

    async def put(self, items: list[Item], nbytes: int, rows: int | None = None) -> None:
        """Append items (``nbytes``, and ``rows`` events: counted here if not given),
        waiting while the buffer is over its bounds."""
        if rows is None:
            rows = sum(item.rows for item in items)
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or self._fits(rows, nbytes))
            if not self._items:
                self._oldest = self._clock()
            self._items.extend(items)
            self._bytes += nbytes
            self._rows += rows
            self._changed.notify_all()

    async def take(self, max_rows: int, max_bytes: int, linger_s: float) -> list[Item]:
        """The next batch; empty only once the buffer is closed and drained."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or bool(self._items))
            full = self._full_predicate(max_rows, max_bytes)
            # Items left over from the last cut keep the older arrival time: they flush
            # sooner, never later.
            remaining = linger_s - (self._clock() - self._oldest)
            if remaining > 0 and not full():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait_for(full), timeout=remaining)
            batch = self._cut(max_rows, max_bytes)
            self._changed.notify_all()
            return batch

    def _full_predicate(self, max_rows: int, max_bytes: int) -> Callable[[], bool]:
        return lambda: (self._closed or self._flush_now or self._rows >= max_rows
                        or self._bytes >= max_bytes)

    def _cut(self, max_rows: int, max_bytes: int) -> list[Item]:
        # A block is never split: a batch may pass max_rows by at most one block's rows.
        batch: list[Item] = []
        taken = rows = 0
        items = self._items
        while items and rows < max_rows:
            size = items[0].nbytes
            if batch and taken + size > max_bytes:
                break
            item = items.popleft()
            batch.append(item)
            taken += size
            rows += item.rows
        self._bytes -= taken
        self._rows -= rows
        if not items:
            self._flush_now = False
        return batch

    async def flush_now(self) -> None:
        """Cut what is waiting without lingering (used before partitions move)."""
        async with self._changed:
            self._flush_now = True
            self._changed.notify_all()

    async def purge(self, tps: set[TopicPartitionKey]) -> int:
        """Drop the waiting items of these partitions; they are replayed by the next owner."""
        async with self._changed:
            kept = [item for item in self._items if item.chunk.tp not in tps]
            self._items = deque(kept)
            self._bytes = sum(item.nbytes for item in kept)
            dropped = self._rows - sum(item.rows for item in kept)
            self._rows -= dropped
            self._changed.notify_all()
            return dropped

    async def close(self) -> None:
        """No more puts: ``take`` drains what is left, then returns empty batches."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
