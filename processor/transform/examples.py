"""Transforms used by the example pipeline in ``config/example.yaml``.

A transform takes the decoded, validated event and returns it (changed or not), or None to
drop it. It must not block: it runs on the event loop. If it raises, that one event goes to
the dead-letter path with reason ``transform_error``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit


def normalize_currency(event: dict[str, Any]) -> dict[str, Any]:
    """Upper-case ISO currency codes so ``eur`` and ``EUR`` group together."""
    event["currency"] = event["currency"].upper()
    return event


def strip_url_query(event: dict[str, Any]) -> dict[str, Any]:
    """Drop query strings and fragments from page URLs; they carry tokens, not pages."""
    parts = urlsplit(event["url"])
    event["url"] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return event


def drop_bots(event: dict[str, Any]) -> dict[str, Any] | None:
    """Filter out page views from self-declared crawlers."""
    agent = str(event.get("user_agent") or "").lower()
    return None if "bot" in agent else event
