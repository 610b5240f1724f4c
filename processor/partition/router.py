"""The partition stage: each event to a writer lane by its key, so every event of one key is
written by one lane, in order.

A mirror's truncate concerns every key, so it goes to every lane, in each lane's order: a
lane empties the mirror up to the truncate's source position when it reaches it, after the
older changes of its own keys, and the partition's watermark passes it only once every lane
has. Rows older than the truncate that one lane writes after another lane's truncate are
thus removed again by its own copy.

A block of events decoded together (:class:`~processor.core.records.Block`, one partition's
share of a fetch, insert tables only) has no key: it goes to its partition's lane whole, and
so does every other event of a topic that the columnar path reads (``by_partition``), so
that one partition's events are still written by one lane, in order (of two events with
one id, the earlier is kept, as when every event goes by its key).

crc32 rather than ``hash()``: Python salts ``hash`` of bytes per process, and a lane choice
that is stable across processes and restarts makes logs and metrics comparable.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol
from zlib import crc32

from processor.core.records import Item, Row


class LaneInput(Protocol):
    """What the router hands a lane's items to (the batch stage's buffer)."""

    async def put(self, items: list[Item], nbytes: int, rows: int | None = None) -> None:
        """Add ``items`` (``nbytes`` and ``rows`` events in all); waits while the lane is
        full."""

    async def close(self) -> None:
        """No more items will come."""


def lane_for(key: bytes | None, partition: int, lanes: int) -> int:
    """The lane of one event. Events without a key keep their partition's order instead."""
    if key is None:
        return partition % lanes
    return crc32(key) % lanes


class Router:
    """Spreads the items of one fetch over the lanes, keeping their order within each lane."""

    def __init__(self, lanes: Sequence[LaneInput], by_partition: frozenset[str] = frozenset()
                 ) -> None:
        """``by_partition``: the topics whose events go to their partition's lane."""
        self._lanes = lanes
        self._by_partition = by_partition

    async def put(self, items: Sequence[Item]) -> None:
        """Hand each lane its share of ``items`` at once (waits while a lane is full)."""
        count = len(self._lanes)
        per_lane: list[list[Item]] = [[] for _ in range(count)]
        per_lane_bytes = [0] * count
        per_lane_rows = [0] * count
        for item in items:
            # Every lane's copy, whatever its key: Debezium sends none, another producer may
            # (a keyed truncate left on its key's lane let other lanes write older rows
            # after it). The usual event pays one type test.
            if type(item) is Row and item.truncate and count > 1:
                item.chunk.pending += count - 1  # each lane's copy is written, and counted
                for lane in range(count):
                    per_lane[lane].append(item if lane == 0 else copy.copy(item))
                    per_lane_bytes[lane] += item.nbytes
                    per_lane_rows[lane] += 1
                continue
            topic, partition = item.chunk.tp
            lane = lane_for(None if topic in self._by_partition else item.key, partition,
                            count)
            per_lane[lane].append(item)
            per_lane_bytes[lane] += item.nbytes
            per_lane_rows[lane] += item.rows
        for target, share, nbytes, rows in zip(self._lanes, per_lane, per_lane_bytes,
                                               per_lane_rows, strict=True):
            if share:
                await target.put(share, nbytes, rows)

    async def close(self) -> None:
        """Tell every lane that nothing more will come."""
        for target in self._lanes:
            await target.close()
