"""Which dead letters a ``weir dlq`` command applies to, wherever they are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from processor.deadletter.in_topic import TopicDeadLetter
from processor.deadletter.spool import Entry


@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters a command applies to (the table's form: ``DeadLetterTable.where``)."""

    topic: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_replayed: bool = False

    def matches(self, dead: TopicDeadLetter) -> bool:
        """The same filters, for a dead letter read from a dead-letter topic."""
        return self._matches(dead.topic, dead.reason, dead.failed_at)

    def matches_spooled(self, entry: Entry) -> bool:
        """The same filters, for a spooled dead letter (one of unknown time: no time filter)."""
        at = entry.spooled_at
        if at is None and (self.since or self.until):
            return False
        return self._matches(entry.dead.topic, entry.dead.reason, at)

    def _matches(self, topic: str, reason: str, at: datetime | None) -> bool:
        return ((self.topic is None or topic == self.topic)
                and (self.reason is None or reason == self.reason)
                and (self.since is None or at is None or at >= _aware(self.since))
                and (self.until is None or at is None or at < _aware(self.until)))


def _aware(moment: datetime) -> datetime:
    # A time given without a zone means UTC, as PostgreSQL's timestamptz comparison does here.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
