"""The raw-bytes shortcut of the shape limits never skips a walk that would reject."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.errors import EventRejected
from processor.decode.limits import Limits

LIMITS = Limits(max_depth=4, max_string=40, max_array=6, max_fields=6)

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=45), inner,
                                                                max_size=8),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), values, max_size=8),
       st.sampled_from([None, 1, 2]))
def test_fits_raw_implies_the_walk_passes(event: dict[str, object], indent: int | None) -> None:
    option = orjson.OPT_INDENT_2 if indent else 0
    raw = orjson.dumps(event, option=option)
    if LIMITS.fits_raw(raw):
        try:
            LIMITS.check(event)
        except EventRejected as exc:  # pragma: no cover - the failure being tested for
            raise AssertionError(f"fits_raw passed {raw!r} but the walk says {exc}") from exc
