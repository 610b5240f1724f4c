"""Paths and epochs, on generated input: what a mapped column reads.

- A path walked through any JSON value finds what a direct walk of the same steps finds:
  the value, absent (a missing key, an index past the end, a null on the way), or a
  mismatch (a key asked of a non-object, an index of a non-array).
- An epoch count in any unit lands on the instant ``datetime`` arithmetic gives, whenever
  that instant is in the years 1 to 9999, and is refused exactly when it is not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.paths import ABSENT, PathMismatch, compile_walk, parse_path, show_path
from processor.core.pgtime import PG_EPOCH, aware_micros
from processor.decode.converters import Unfit
from processor.decode.mapped import epoch_converter

KEYS = st.sampled_from(["a", "b", "c"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10)
STEPS = st.lists(st.one_of(KEYS, st.integers(0, 3)), min_size=1, max_size=4).map(
    lambda s: ("a", *s[1:]) if isinstance(s[0], int) else tuple(s))


def reference(value: Any, steps: tuple[str | int, ...]) -> Any:
    for step in steps:
        if value is None:
            return ABSENT
        if isinstance(step, str):
            if not isinstance(value, dict):
                return PathMismatch
            if step not in value:
                return ABSENT
            value = value[step]
        else:
            if not isinstance(value, list):
                return PathMismatch
            if step >= len(value):
                return ABSENT
            value = value[step]
    return value


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=3), STEPS)
def test_a_walk_finds_what_the_steps_reach(event: dict[str, Any],
                                           steps: tuple[str | int, ...]) -> None:
    assert parse_path(show_path(steps)) == steps
    expected = reference(event, steps)
    try:
        found = compile_walk(steps)(event)
    except PathMismatch:
        found = PathMismatch
    assert found is expected if expected in (ABSENT, PathMismatch) else found == expected


UNITS = {"seconds": 1, "milliseconds": 1_000, "microseconds": 1_000_000,
         "nanoseconds": 1_000_000_000}
FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bounds(unit: str) -> tuple[int, int]:
    """The first and last counts of ``unit`` inside the years 1 to 9999."""
    per = UNITS[unit]
    first = -((EPOCH - FIRST) // timedelta(microseconds=1)) * per // 1_000_000
    last = ((LAST - EPOCH) // timedelta(microseconds=1) * per + per - 1) // 1_000_000
    return first, last


@pytest.mark.parametrize("unit", list(UNITS))
def test_epochs_at_their_bounds(unit: str) -> None:
    convert = epoch_converter(unit)
    first, last = bounds(unit)
    assert convert(first) == aware_micros(FIRST)
    # The last count of the unit in 9999, floored to a microsecond: .999 s for millis.
    assert convert(last) == aware_micros(EPOCH + timedelta(
        microseconds=last * 1_000_000 // UNITS[unit]))
    assert aware_micros(LAST) - convert(last) < 1_000_000 // min(UNITS[unit], 1_000_000)
    for outside in (first - 1, last + 1):
        with pytest.raises(Unfit, match="outside the years 1 to 9999"):
            convert(outside)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(list(UNITS)), st.integers(-(2**70), 2**70))
def test_an_epoch_count_lands_on_its_instant(unit: str, count: int) -> None:
    convert = epoch_converter(unit)
    first, last = bounds(unit)
    if not first <= count <= last:
        with pytest.raises(Unfit):
            convert(count)
        return
    micros = count * 1_000_000 // UNITS[unit]  # floored: a nanosecond count's rest dropped
    assert convert(count) == aware_micros(EPOCH + timedelta(microseconds=micros))
    assert convert(count) == (EPOCH - PG_EPOCH) // timedelta(microseconds=1) + micros


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**10), 10**10), st.integers(0, 999))
def test_fractional_seconds_are_exact(whole: int, thousandths: int) -> None:
    # 1712345678.123 s is .123000 s, as written, not the float's .12299999...
    text = f"{whole}.{thousandths:03d}"
    sign = -1 if text.startswith("-") else 1
    micros = whole * 1_000_000 + sign * thousandths * 1000
    expected = (EPOCH - PG_EPOCH) // timedelta(microseconds=1) + micros
    assert epoch_converter("seconds")(float(text)) == expected
