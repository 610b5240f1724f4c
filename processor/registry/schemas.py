"""Schemas by id: fetched from the registry once, parsed once, kept in a bounded cache.

An id's schema never changes, so a cached one is never fetched again; the bound is only
for memory (``schema_registry.cache_size``, least recently used out first). The decode
stage asks :meth:`SchemaBook.ensure` for the ids of a fetch before it decodes it, so the
per-event :meth:`SchemaBook.get` is a dictionary lookup and never waits.

What the registry says about an id, and what it means:

- found: kept, with the subjects it is registered under and its parsed form;
- not found (404): kept as *missing* for a short while, so the events that name it become
  dead letters (``unknown_schema_id``) without asking again for each of them;
- not parseable: kept with the parser's message (``bad_schema`` dead letters);
- the registry away or refusing: :meth:`ensure` waits, the part ``schema registry`` is
  stalled meanwhile (``/readyz`` says why), and nothing is decoded past it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from processor.core.retry import retry_transient
from processor.core.stalls import Stalls
from processor.core.verdict import Verdict, verdict
from processor.registry.client import (
    RegisteredSchema,
    RegistryClient,
    SchemaNotFound,
    SubjectNotFound,
)

REGISTRY_PART = "schema registry"
MISSING_TTL_S = 30.0  # how long "the registry has no such id" is believed without asking

Parser = Callable[[RegisteredSchema], Any]


class SchemaUnusable(ValueError):
    """A parser's refusal: the registered text is not a schema Weir can read."""


@dataclass(frozen=True, slots=True)
class Known:
    """What the registry said about one id: its schema, or why there is none to use."""

    schema_id: int
    schema: RegisteredSchema | None
    subjects: tuple[str, ...] = ()
    parsed: Any = None
    problem: str | None = None  # why the id's events cannot be read; None when usable
    fetched_at: float = 0.0


class SchemaBook:
    """The process's schemas by id."""

    def __init__(self, client: RegistryClient, cache_size: int, parse: Parser) -> None:
        self._client = client
        self._size = cache_size
        self._parse = parse
        self._known: OrderedDict[int, Known] = OrderedDict()

    def get(self, schema_id: int) -> Known | None:
        """The cached answer for ``schema_id``, or None if it must be fetched first."""
        known = self._known.get(schema_id)
        if known is None:
            return None
        if known.schema is None and time.monotonic() - known.fetched_at > MISSING_TTL_S:
            del self._known[schema_id]
            return None
        self._known.move_to_end(schema_id)
        return known

    async def ensure(self, ids: Iterable[int], stalls: Stalls | None) -> None:
        """Fetch every id of ``ids`` not cached; waits (stalled) while the registry is away."""
        for schema_id in sorted(set(ids)):
            if self.get(schema_id) is not None:
                continue
            known = await retry_transient(
                functools.partial(asyncio.to_thread, self.fetch, schema_id),
                REGISTRY_PART, operation="schema_fetch", stalls=stalls)
            self._keep(known)

    async def attempt(self, schema_id: int, stalls: Stalls | None) -> bool:
        """One try for ``schema_id``: True once it is known (found or not), False while the
        registry does not answer (the part ``schema registry`` is stalled meanwhile)."""
        if self.get(schema_id) is not None:
            return True
        try:
            known = await asyncio.to_thread(self.fetch, schema_id)
        except Exception as exc:
            if verdict(exc) not in (Verdict.RETRY, Verdict.STALL) or (
                    stalls is not None and stalls.exit_on_stall):
                raise
            if stalls is not None:
                stalls.enter(REGISTRY_PART, exc)
            return False
        self._keep(known)
        if stalls is not None:
            stalls.leave(REGISTRY_PART)
        return True

    def fetch(self, schema_id: int) -> Known:
        """Ask the registry (blocking) for ``schema_id``, its subjects, and parse it."""
        now = time.monotonic()
        try:
            schema = self._client.schema(schema_id)
            subjects = tuple(self._client.subjects_of(schema_id))
        except SchemaNotFound as exc:
            return Known(schema_id, None, problem=str(exc), fetched_at=now)
        try:
            schema = self._client.resolve(schema)
        except SubjectNotFound as exc:
            return Known(schema_id, schema, subjects, None,
                         f"schema id {schema_id} ({schema.schema_type}) cannot be read: a "
                         f"schema it references is missing: {exc}", now)
        try:
            parsed = self._parse(schema)
        except SchemaUnusable as exc:
            return Known(schema_id, schema, subjects, None,
                         f"schema id {schema_id} ({schema.schema_type}) cannot be read: {exc}",
                         now)
        return Known(schema_id, schema, subjects, parsed, None, now)

    def _keep(self, known: Known) -> None:
        self._known[known.schema_id] = known
        while len(self._known) > self._size:
            self._known.popitem(last=False)
