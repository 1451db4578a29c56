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


def signals_of(
    events: Sequence[Event], segments: Sequence[str], now: float
) -> tuple[list[str], dict[tuple[str | None, str, int], dict[str, float]]]:
    """What one visitor's stored events add for the strategies: its product views (oldest
    first, for recently_viewed) and the day's popularity counts, site-wide (segment None)
    and for each of `segments`, the visitor's segments now."""
    today = int(now // DAY)
    first_day = today - WINDOW_DAYS + 1
    recent: list[str] = []
    counts: dict[tuple[str | None, str, int], dict[str, float]] = defaultdict(
        lambda: defaultdict(float))  # fmt: skip
    scopes: list[str | None] = [None, *dict.fromkeys(segments)]
    for ev in sorted(events, key=lambda e: e.ts):  # stable: a batch keeps its order
        day = min(int(ev.ts // DAY), today)  # a little clock skew: not a future day
        if ev.type == "product_view":
            pid = ev.properties.get("product_id")
            if not isinstance(pid, str) or not pid:
                continue
            recent.append(pid)
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
    return recent, {key: dict(v) for key, v in counts.items()}


def wants_segments(events: Sequence[Event]) -> bool:
    """Do these events count for popular_in_segment (so the visitor's segments matter)?"""
    return any(ev.type in ("product_view", "purchase") for ev in events)


class Recommender:
    """Resolves recommendations content for a page view. `cache_seconds`: how long a
    process reuses a popularity ranking (per site and segment); a stale one keeps
    serving while one background read renews it (rankings move slowly, page views are
    many, and a page view must not wait for 2 x shards reads)."""

    def __init__(self, store: RecommendationStore, purchase_weight: float = 5.0,
                 cache_seconds: float = 60.0) -> None:  # fmt: skip
        self.store = store
        self.purchase_weight = purchase_weight
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str | None], tuple[float, list[str]]] = {}
        self._renewing: dict[tuple[str, str | None], asyncio.Task[list[str]]] = {}

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
        if self.cache_seconds <= 0:
            return await self._read_top(site, segment, now)
        key = (site, segment)
        cached = self._cache.get(key)
        if cached is not None and 0 <= now - cached[0] < self.cache_seconds:
            return cached[1]
        task = self._renewing.get(key)
        if task is None:
            task = asyncio.ensure_future(self._read_top(site, segment, now))
            self._renewing[key] = task
            task.add_done_callback(lambda t: self._renew_done(key, t))
        if cached is not None:
            return cached[1]  # stale: served while the renewal runs
        return await asyncio.shield(task)

    async def _read_top(self, site: str, segment: str | None, now: float) -> list[str]:
        today = int(now // DAY)
        days = list(range(today - WINDOW_DAYS + 1, today + 1))
        top = await self.store.top(site, segment, days, self.purchase_weight, MAX_LIMIT)
        if self.cache_seconds > 0:
            self._cache[(site, segment)] = (now, top)
        return top

    async def renewed(self) -> None:
        """Wait for the rankings being renewed in the background (shutdown, tests)."""
        await asyncio.gather(*self._renewing.values(), return_exceptions=True)

    def _renew_done(self, key: tuple[str, str | None], task: asyncio.Task[list[str]]) -> None:
        self._renewing.pop(key, None)
        if not task.cancelled():
            task.exception()  # consumed: a failed renewal is retried by the next page view
