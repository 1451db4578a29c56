"""Recommendations: content of kind `recommendations` resolved to product ids.

Strategies (the content's payload `{strategy, limit, segment?, title?}`):

* `recently_viewed` — the visitor's last product views, most recent first, each
  product once.
* `popular` — site-wide over the last 7 UTC days (today and the 6 before): product
  views plus `purchase_weight` × units bought.
* `popular_in_segment` — the same, counting only what visitors did while they were
  members of `segment`.

Ties are broken by product id, so an answer is deterministic. Data comes from the
stored `product_view` (`product_id`) and `purchase` (`items`) events; `items` are
product ids or objects `{"product_id" (or "id"), "quantity"?}`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from segserver.profile.events import Event
from segserver.storage.recommendations import DAY, RecommendationStore

WINDOW_DAYS = 7
MAX_LIMIT = 50  # the largest `limit` a content accepts (catalogue/campaigns.py)


def purchased(items: Any) -> Iterator[tuple[str, float]]:
    """(product id, units) of a purchase's `items`; unusable entries are skipped."""
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, str) and item:
            yield item, 1.0
        elif isinstance(item, dict):
            pid = item.get("product_id", item.get("id"))
            qty = item.get("quantity", 1)
            if isinstance(pid, str) and pid and isinstance(qty, int | float) and qty > 0:
                yield pid, float(qty)


class Recommender:
    """`cache_seconds`: how long a process reuses a popularity ranking (per site and
    segment) before asking Redis again; rankings move slowly, page views are many."""

    def __init__(self, store: RecommendationStore, purchase_weight: float = 5.0,
                 cache_seconds: float = 60.0) -> None:  # fmt: skip
        self.store = store
        self.purchase_weight = purchase_weight
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str | None], tuple[float, list[str]]] = {}

    async def record_events(self, site: str, events: Sequence[Event], segments: Sequence[str],
                            now: float) -> None:  # fmt: skip
        """Keep what the strategies need; `segments` are the visitors' segments now
        (every event of the call is counted for each of them)."""
        today = int(now // DAY)
        first_day = today - WINDOW_DAYS + 1
        recent: dict[str, list[str]] = defaultdict(list)
        counts: dict[tuple[str | None, str, int], dict[str, float]] = defaultdict(
            lambda: defaultdict(float))  # fmt: skip
        scopes: list[str | None] = [None, *dict.fromkeys(segments)]
        for ev in sorted(events, key=lambda e: e.ts):  # stable: a batch keeps its order
            day = min(int(ev.ts // DAY), today)  # a little clock skew: not a future day
            if ev.type == "product_view":
                pid = ev.properties.get("product_id")
                if not isinstance(pid, str) or not pid:
                    continue
                recent[ev.visitor_id].append(pid)
                bought = [(pid, 1.0)]
                kind = "v"
            elif ev.type == "purchase":
                bought, kind = list(purchased(ev.properties.get("items"))), "b"
            else:
                continue
            if day < first_day:
                continue
            for scope in scopes:
                for pid, amount in bought:
                    counts[(scope, kind, day)][pid] += amount
        if not counts and not recent:
            return  # most page views: no task, no extra loop turn
        await asyncio.gather(
            *(self.store.push_recent(site, vid, pids) for vid, pids in recent.items()),
            self.store.add_popularity(site, counts, now),
        )

    async def products(self, site: str, visitor_id: str, payload: Mapping[str, Any],
                       now: float) -> list[str]:  # fmt: skip
        """The product ids a recommendations content shows this visitor now."""
        limit = payload.get("limit", 8)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return []
        limit = min(limit, MAX_LIMIT)
        strategy = payload.get("strategy")
        if strategy == "recently_viewed":
            return await self.store.recent(site, visitor_id, limit)
        if strategy == "popular":
            return (await self._top(site, None, now))[:limit]
        if strategy == "popular_in_segment" and isinstance(payload.get("segment"), str):
            return (await self._top(site, payload["segment"], now))[:limit]
        return []

    async def _top(self, site: str, segment: str | None, now: float) -> list[str]:
        cached = self._cache.get((site, segment))
        if cached is not None and 0 <= now - cached[0] < self.cache_seconds:
            return cached[1]
        today = int(now // DAY)
        days = list(range(today - WINDOW_DAYS + 1, today + 1))
        top = await self.store.top(site, segment, days, self.purchase_weight, MAX_LIMIT)
        if self.cache_seconds > 0:
            self._cache[(site, segment)] = (now, top)
        return top
