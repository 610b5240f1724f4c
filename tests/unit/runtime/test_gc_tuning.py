"""`weir run` freezes what start-up built and collects the young generation less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from processor.runtime import gc_tuning


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored")
def test_tune_freezes_start_up_and_raises_the_young_threshold() -> None:
    gc_tuning.tune()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (gc_tuning.YOUNG, gc_tuning.OLDER, gc_tuning.OLDEST)
    # Cyclic garbage is still collected, only later.
    assert gc.isenabled()
