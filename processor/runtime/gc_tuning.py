"""The garbage collector, tuned for a process that keeps every event's objects for a while.

CPython collects its youngest generation every 700 net allocations of container objects,
which suits objects that die young. An event's objects do not: its record, row and values
live from the fetch to the batch's commit, 100 ms or more, so nearly every one of them
survives the young collections and is traversed again by the older ones, and every full
collection also walks everything imported and compiled at start. Measured in a live
pipeline at a fixed rate (``benchmarks/latency_stages.py``), that was about 10 s of
collection in a 75 s run, full collections of 250 to 800 ms holding the event loop, and so
every lane's round trips; in a profile of ``weir run`` on a backlog, 23.6 % of the busy
samples (3.9 % tuned). See docs/performance.md.

Instead, once start-up has built everything, what exists is frozen out of the collector's
sight (``gc.freeze``), and the youngest generation is collected every ``YOUNG`` allocations,
a few times the objects in flight, so most of them are gone by the time it runs. Reference
counting frees rows as before; only cyclic garbage, of which Weir makes little, waits longer.
"""

from __future__ import annotations

import gc

YOUNG = 50_000
OLDER = 20  # young collections per collection of the middle generation
OLDEST = 20  # middle-generation collections per full collection (CPython also waits for
# the objects not yet in a full collection to reach a quarter of those that were)


def tune() -> None:
    """Freeze what start-up built and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, OLDER, OLDEST)
