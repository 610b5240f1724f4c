"""Transforms used by the example pipeline in ``config/example.yaml``.

A transform takes the decoded, validated event and returns it (changed or not), or None to
drop it. It must not block: it runs on the event loop. If it raises, that one event goes to
the dead-letter path with reason ``transform_error``.

Each also has an Arrow form (:mod:`processor.transform.columnar`), so the example's event
types can take the columnar path; ``tests/unit/transform`` holds each form to its function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from processor.transform.columnar import ArrowResult, with_arrow

if TYPE_CHECKING:  # imported where used: the benchmark's peers import these functions too
    import pyarrow as pa

# The URLs whose query and fragment the Arrow form strips as urlsplit/urlunsplit do: a
# lower-case http(s) scheme, a plain host (and port); everything else takes the row path.
PLAIN_URL = r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[^?#]*)?([?#].*)?$"


def _upper_currency(table: pa.Table) -> ArrowResult:
    import pyarrow.compute as pc
    i = table.schema.get_field_index("currency")
    return ArrowResult(table.set_column(i, "currency", pc.utf8_upper(table["currency"])))


def _no_bots(table: pa.Table) -> ArrowResult:
    import pyarrow.compute as pc
    agent = pc.utf8_lower(table["user_agent"])
    # Arrow lower-cases a character at a time, Python by Unicode's full mappings: beyond
    # ASCII the function decides.
    return ArrowResult(table, keep=pc.fill_null(pc.invert(pc.match_substring(agent, "bot")),
                                                True),
                       unsure=pc.fill_null(pc.invert(pc.string_is_ascii(table["user_agent"])),
                                           False))


def _strip_query(table: pa.Table) -> ArrowResult:
    import pyarrow.compute as pc
    url = table["url"]
    i = table.schema.get_field_index("url")
    stripped = pc.replace_substring_regex(url, r"[?#].*$", "")
    # urlsplit reads some text beyond ASCII its own way: there the function decides.
    return ArrowResult(table.set_column(i, "url", stripped), unsure=pc.or_(
        pc.invert(pc.match_substring_regex(url, PLAIN_URL)),
        pc.invert(pc.string_is_ascii(url))))


@with_arrow(_upper_currency, unicode=True)  # a valid currency is three ASCII letters
def normalize_currency(event: dict[str, Any]) -> dict[str, Any]:
    """Upper-case ISO currency codes so ``eur`` and ``EUR`` group together."""
    event["currency"] = event["currency"].upper()
    return event


@with_arrow(_strip_query, unicode=True)
def strip_url_query(event: dict[str, Any]) -> dict[str, Any]:
    """Drop query strings and fragments from page URLs; they carry tokens, not pages."""
    parts = urlsplit(event["url"])
    event["url"] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return event


@with_arrow(_no_bots, unicode=True)
def drop_bots(event: dict[str, Any]) -> dict[str, Any] | None:
    """Filter out page views from self-declared crawlers."""
    agent = str(event.get("user_agent") or "").lower()
    return None if "bot" in agent else event
