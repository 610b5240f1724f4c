"""Realistic sample events for the example contracts: orders and page views.

Keys follow a Zipf-like skew (a few customers and users are very busy, most are not), every
event carries a per-key sequence number ``seq`` so that order can be checked downstream, and
a small share of values exercise the transforms (lower-case currencies, bot user agents,
tracking query strings).
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

Event = dict[str, Any]

PAGES = ("/", "/search", "/cart", "/checkout", "/account", "/help")
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)

TAGS = ("gift", "b2b", "fragile", "promo", "repeat")
CITIES = (("FR", "Lyon"), ("FR", "Paris"), ("DE", "Köln"), ("ES", "Sevilla"),
          ("US", "Austin"), ("JP", "Ōsaka"))
TENANTS = ("acme", "globex", "initech")


class SampleEvents:
    """A seeded generator of example events with skewed keys and per-key sequences."""

    def __init__(self, seed: int = 7, keys: int = 1000, skew: float = 1.1,
                 spread_days: float = 0.0, seq_base: int = 0, rich: bool = False) -> None:
        self._rand = random.Random(seed)
        # Orders with what analysts map (docs/analysts.md): a shipping address, tags, an
        # epoch-milliseconds time, and a tenant header (:meth:`headers`).
        self._rich = rich
        self._keys = keys
        self._cum_weights = list(itertools.accumulate(1 / (rank ** skew)
                                                      for rank in range(1, keys + 1)))
        self._seq: dict[str, int] = defaultdict(lambda: seq_base)
        self._spread = timedelta(days=spread_days)
        self._makers: dict[str, Callable[[str], Event]] = {
            "order": self._order,
            "page_view": self._page_view,
        }

    @property
    def event_types(self) -> list[str]:
        """The event types this generator knows."""
        return list(self._makers)

    def _key(self, prefix: str) -> str:
        rank = self._rand.choices(range(self._keys), cum_weights=self._cum_weights)[0]
        return f"{prefix}-{rank:06d}"

    def _common(self, key_name: str, key: str) -> Event:
        self._seq[key] += 1
        now = datetime.now(UTC) - self._rand.random() * self._spread
        return {
            "event_id": str(uuid.UUID(int=self._rand.getrandbits(128), version=4)),
            key_name: key,
            "seq": self._seq[key],
            "occurred_at": now.isoformat(timespec="milliseconds"),
        }

    def _order(self, key: str) -> Event:
        rand = self._rand
        lines = [(rand.randint(1, 4), round(rand.uniform(2, 120), 2))
                 for _ in range(rand.randint(1, 3))]
        items = [{"sku": f"sku-{rand.randrange(5000):05d}", "qty": qty, "price": price}
                 for qty, price in lines]
        event = self._common("customer_id", key)
        event.update(
            order_id=f"o-{rand.getrandbits(40):010x}",
            status=rand.choice(("created", "paid", "shipped", "cancelled")),
            amount=round(sum(qty * price for qty, price in lines), 2),
            currency=rand.choice(("EUR", "USD", "GBP", "eur")),
            items=items,
            channel=rand.choice(("web", "app", "store")),
        )
        if self._rich:
            self._enrich(event)
        return event

    def _enrich(self, order: Event) -> None:
        rand = self._rand
        placed = datetime.fromisoformat(order["occurred_at"]) - timedelta(
            seconds=rand.randrange(3600))
        order["placed_ms"] = int(placed.timestamp() * 1000)
        order["tags"] = rand.sample(TAGS, rand.randrange(4))
        if rand.random() < 0.9:  # a pickup in store has no address
            country, city = rand.choice(CITIES)
            order["shipping"] = {"address": {"country": country, "city": city},
                                 "method": rand.choice(("standard", "express"))}
        else:
            order["shipping"] = None

    def headers(self, event_type: str, key: str) -> list[tuple[str, bytes]]:
        """The Kafka headers of an event: rich orders carry their tenant (by customer)."""
        if not self._rich or event_type != "order":
            return []
        return [("tenant", TENANTS[sum(key.encode()) % len(TENANTS)].encode())]

    def _page_view(self, key: str) -> Event:
        rand = self._rand
        query = "?utm_source=mail&token=abc" if rand.random() < 0.2 else ""
        event = self._common("user_id", key)
        event.update(
            session_id=f"s-{rand.getrandbits(48):012x}",
            url=f"https://shop.example{rand.choice(PAGES)}{query}",
            referrer=rand.choice((None, "https://search.example/", "https://news.example/")),
            user_agent=rand.choice(AGENTS),
            duration_ms=rand.randint(50, 120_000),
        )
        return event

    def make_invalid(self, event_type: str) -> tuple[str, bytes, str]:
        """A broken record of ``event_type``: its key, its bytes and what is wrong with it.

        One of the ways upstream teams really get it wrong, so the dead-letter path can be
        seen and tested: bytes that are not JSON, JSON that is not an object, a missing
        required field, a value of the wrong type.
        """
        key, event = self.make(event_type)
        kind = self._rand.choice(("not_json", "not_an_object", "missing_field", "wrong_type"))
        if kind == "not_json":
            return key, b"\xff\xfe" + orjson.dumps(event)[2:], kind
        if kind == "not_an_object":
            return key, orjson.dumps([event]), kind
        if kind == "missing_field":
            del event["occurred_at"]
        else:
            event["seq"] = str(event["seq"])
        return key, orjson.dumps(event), kind

    def make(self, event_type: str) -> tuple[str, Event]:
        """One event of ``event_type`` and its key."""
        prefix = "c" if event_type == "order" else "u"
        key = self._key(prefix)
        return key, self._makers[event_type](key)
