"""Which offsets of each owned partition are safely written: the watermark.

Events of one partition are spread over several lanes, and lanes commit independently, so a
later offset may be written before an earlier one. The watermark of a partition is the first
offset that is *not* known to be written; everything below it is in PostgreSQL. It moves in
whole chunks (one fetch's records for one partition), which is cheap and errs on the safe
side: a restart may replay a few written events, and the target's unique key absorbs them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from processor.core.records import Chunk, TopicPartitionKey


class PartitionProgress:
    """The chunks of one partition still in flight, oldest first."""

    def __init__(self, tp: TopicPartitionKey, start: int | None) -> None:
        self.tp = tp
        self.revoked = False
        self._chunks: deque[Chunk] = deque()
        self._written_until = start  # everything below is written; None = unknown yet

    @property
    def written_until(self) -> int | None:
        """The committed watermark, as far as this process knows."""
        return self._written_until

    @property
    def oldest_pending_ms(self) -> int | None:
        """Kafka timestamp of the oldest fetched record not yet written (for lag seconds)."""
        return self._chunks[0].first_timestamp_ms if self._chunks else None

    def open_chunk(self, first: int, end: int, count: int,
                   first_timestamp_ms: int | None = None) -> Chunk:
        """Track ``count`` records fetched for this partition, offsets ``first`` to ``end - 1``.

        ``count`` may be less than ``end - first``: compaction and transaction markers leave
        gaps in the offsets.
        """
        if self._written_until is None:
            self._written_until = first
        chunk = Chunk(self.tp, first, end, pending=count, first_timestamp_ms=first_timestamp_ms)
        self._chunks.append(chunk)
        return chunk

    def watermark_if(self, done: Mapping[Chunk, int]) -> int | None:
        """The watermark as it would be once ``done`` (events per chunk) is also written."""
        for chunk in self._chunks:
            if chunk.pending - done.get(chunk, 0) > 0:
                return chunk.first
        return self._chunks[-1].end if self._chunks else self._written_until

    def mark_done(self, chunk: Chunk, count: int) -> None:
        """Record that ``count`` events of ``chunk`` are written (or need no write)."""
        chunk.pending -= count
        while self._chunks and self._chunks[0].pending <= 0:
            self._written_until = self._chunks.popleft().end

    @property
    def idle(self) -> bool:
        """True when nothing of this partition is in flight."""
        return not self._chunks


class ProgressBook:
    """The progress of every partition this process owns."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartitionKey, PartitionProgress] = {}

    def assign(self, tp: TopicPartitionKey, start: int | None) -> PartitionProgress:
        """Start tracking a newly assigned partition from its stored offset."""
        progress = PartitionProgress(tp, start)
        self._parts[tp] = progress
        return progress

    def revoke(self, tps: Iterable[TopicPartitionKey]) -> None:
        """Forget partitions that moved away; late completions for them are ignored."""
        for tp in tps:
            progress = self._parts.pop(tp, None)
            if progress is not None:
                progress.revoked = True

    def get(self, tp: TopicPartitionKey) -> PartitionProgress | None:
        """The progress of an owned partition."""
        return self._parts.get(tp)

    def owned(self) -> dict[TopicPartitionKey, PartitionProgress]:
        """A snapshot of the owned partitions."""
        return dict(self._parts)

    def watermarks_if(self, done: Mapping[Chunk, int]) -> dict[TopicPartitionKey, int]:
        """Watermarks of the partitions touched by ``done``, as if it were written."""
        result: dict[TopicPartitionKey, int] = {}
        for tp in {chunk.tp for chunk in done}:
            progress = self._parts.get(tp)
            if progress is None:
                continue
            mark = progress.watermark_if(done)
            if mark is not None:
                result[tp] = mark
        return result

    def mark_done(self, done: Mapping[Chunk, int]) -> None:
        """Apply a committed batch to the owned partitions it touched."""
        for chunk, count in done.items():
            progress = self._parts.get(chunk.tp)
            if progress is not None and not progress.revoked:
                progress.mark_done(chunk, count)


def records_behind(end_offset: int, written_until: int | None) -> int:
    """Lag in records: from what is written (nothing yet: the partition's start) to its end."""
    return max(0, end_offset - (written_until or 0))
