"""Each example transform's Arrow form agrees with the function on every event it is sure
of (the columnar path gives it valid events, of any text: the forms are given for any)."""

from __future__ import annotations

import string
from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from processor.transform.columnar import arrow_form
from processor.transform.examples import drop_bots, normalize_currency, strip_url_query

ASCII = st.text(string.printable.replace("\n", "").replace("\r", ""), max_size=30)
# Any text the columnar path lets through: valid UTF-8, no control character.
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
URLS = st.one_of(
    ASCII, TEXT, st.builds(lambda text: f"https://shop.example/{text}?q=1", TEXT),
    st.builds(lambda scheme, host, path, rest: f"{scheme}://{host}{path}{rest}",
              st.sampled_from(["http", "https", "HTTPS", "ftp", "Http"]),
              st.sampled_from(["shop.example", "a", "shop.example:8443", "user@h", "[::1]",
                               "h:", ""]),
              st.sampled_from(["", "/", "/p/1", "/p;v", "/ a", "//x", "/ü", "/\u2028"]),
              st.sampled_from(["", "?", "?q=1", "#f", "#f?x", "?q#f", "?a?b"])))


def run(transform: Any, column: str, values: list[Any]) -> tuple[list[Any], list[bool],
                                                               list[bool]]:
    form = arrow_form(transform)
    assert form is not None
    result = form(pa.table({column: pa.array(values, pa.string())}))
    keep = result.keep.to_pylist() if result.keep is not None else [True] * len(values)
    unsure = result.unsure.to_pylist() if result.unsure is not None else [False] * len(values)
    return result.table.column(column).to_pylist(), keep, unsure


@given(st.lists(st.text(string.ascii_letters, min_size=3, max_size=3), max_size=20))
def test_normalize_currency(codes: list[str]) -> None:
    got, keep, unsure = run(normalize_currency, "currency", codes)
    assert got == [normalize_currency({"currency": c})["currency"] for c in codes]
    assert all(keep)
    assert not any(unsure)


@given(st.lists(st.one_of(st.none(), ASCII, TEXT, st.sampled_from(
    ["Googlebot/2.1", "BOT", "b o t", "Ünïbot", "\u0130bot", "BO\u0162"])), max_size=20))
def test_drop_bots(agents: list[str | None]) -> None:
    _, keep, unsure = run(drop_bots, "user_agent", agents)
    for agent, kept, doubt in zip(agents, keep, unsure, strict=True):
        if not doubt:
            assert kept == (drop_bots({"user_agent": agent}) is not None), agent
    # Only text beyond ASCII is left to the function.
    assert unsure == [a is not None and not a.isascii() for a in agents]


@given(st.lists(URLS, max_size=20))
def test_strip_url_query(urls: list[str]) -> None:
    got, keep, unsure = run(strip_url_query, "url", urls)
    assert all(keep)
    for url, stripped, doubt in zip(urls, got, unsure, strict=True):
        if not doubt:
            assert stripped == strip_url_query({"url": url})["url"], url
