"""Pick a writer lane by the event key, so every event of one key is written by one lane, in order.

crc32 rather than ``hash()``: Python salts ``hash`` of bytes per process, and a lane choice
that is stable across processes and restarts makes logs and metrics comparable.
"""

from __future__ import annotations

from zlib import crc32


def lane_for(key: bytes | None, partition: int, lanes: int) -> int:
    """The lane of one event. Events without a key keep their partition's order instead."""
    if key is None:
        return partition % lanes
    return crc32(key) % lanes
