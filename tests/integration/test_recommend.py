"""Recommendation strategies on a real redis-server, with the injected clock:
recently viewed (order, uniqueness, limit), popular over the last 7 days (old days
drop out), popular in a segment."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from segserver.profile.events import Event
from segserver.recommend import Recommender, purchased, signals_of
from segserver.storage.finish import Finish, FinishStore
from segserver.storage.recommendations import RecommendationStore
from segserver.wiring import Services
from tests.conftest import Clock

DAY = 86400.0


@dataclass
class Recorder:
    """Writes what a batch of stored events adds for the strategies, per visitor, the way
    the after-events step does (one lua/finish_visitor.lua call each), and reads them
    back through the Recommender."""

    finish: FinishStore
    rec: Recommender

    async def record_events(
        self, site: str, events: Sequence[Event], segments: Sequence[str], now: float
    ) -> None:
        by_visitor: dict[str, list[Event]] = defaultdict(list)
        for ev in events:
            by_visitor[ev.visitor_id].append(ev)
        for vid, evs in by_visitor.items():
            recent, popularity = signals_of(evs, segments, now)
            await self.finish.finish(site, vid, Finish(recent=recent, popularity=popularity), now)

    async def products(self, *args: Any) -> list[str]:
        return await self.rec.products(*args)


def recommender(
    services: Services, cache_seconds: float = 0.0, length: int = 20, weight: float = 5.0
) -> Recorder:
    store = RecommendationStore(services.clients.raw, services.scripts, services.keys)
    finish = replace(services.pageviews.after.finish_store, recent_length=length)
    return Recorder(finish, Recommender(store, purchase_weight=weight, cache_seconds=cache_seconds))


def view(vid: str, product: str, ts: float, **props: Any) -> Event:
    return Event(vid, "product_view", ts, None, {"product_id": product, **props})


def purchase(vid: str, items: list[Any], ts: float) -> Event:
    return Event(vid, "purchase", ts, None, {"value": 10.0, "items": items})


def popular(limit: int = 10) -> dict[str, Any]:
    return {"strategy": "popular", "limit": limit}


async def test_recently_viewed_order_uniqueness_and_limit(services: Services, clock: Clock) -> None:
    rec = recommender(services, length=4)
    t = clock()
    await rec.record_events(
        "shop", [view("ann", "p1", t), view("ann", "p2", t + 1), view("bob", "x", t)], [], t + 1
    )
    # out of order in one batch: sorted by event time
    await rec.record_events(
        "shop",
        [view("ann", "p4", t + 4), view("ann", "p3", t + 3), view("ann", "p1", t + 5)],
        [],
        t + 5,
    )
    payload = {"strategy": "recently_viewed", "limit": 10}
    assert await rec.products("shop", "ann", payload, t + 5) == ["p1", "p4", "p3", "p2"]
    assert await rec.products("shop", "ann", {**payload, "limit": 2}, t + 5) == ["p1", "p4"]
    await rec.record_events("shop", [view("ann", "p5", t + 6)], [], t + 6)
    assert await rec.products("shop", "ann", payload, t + 6) == ["p5", "p1", "p4", "p3"]
    assert await rec.products("shop", "bob", payload, t + 6) == ["x"]
    assert await rec.products("shop", "cid", payload, t + 6) == []
    assert await rec.products("other", "ann", payload, t + 6) == []


async def test_popular_counts_views_and_purchases_over_seven_days(
    services: Services, clock: Clock
) -> None:
    rec = recommender(services)
    day0 = clock()
    # day 0: "old" viewed 10 times; "bought" viewed once and 2 units bought (weight 5)
    await rec.record_events("shop", [view(f"v{i}", "old", day0) for i in range(10)], [], day0)
    await rec.record_events(
        "shop",
        [view("w", "bought", day0), purchase("w", [{"product_id": "bought", "quantity": 2}], day0)],
        [],
        day0,
    )
    clock.advance(3 * DAY)
    await rec.record_events(
        "shop", [view("z", "b-new", clock()), view("z", "a-new", clock())], [], clock()
    )
    assert await rec.products("shop", "z", popular(), clock()) == [
        "bought",
        "old",
        "a-new",
        "b-new",
    ]
    assert await rec.products("shop", "z", popular(2), clock()) == ["bought", "old"]
    # day 6 still counts day 0; day 7 does not
    clock.advance(3 * DAY)
    assert (await rec.products("shop", "z", popular(), clock()))[:2] == ["bought", "old"]
    clock.advance(DAY)
    assert await rec.products("shop", "z", popular(), clock()) == ["a-new", "b-new"]
    clock.advance(3 * DAY)
    assert await rec.products("shop", "z", popular(), clock()) == []


async def test_ties_break_on_product_id_at_the_limit(services: Services, clock: Clock) -> None:
    rec = recommender(services)
    products = ["d", "b", "e", "a", "c"]
    await rec.record_events(
        "shop",
        [view("v", p, clock()) for p in products]
        + [view("w", "top", clock()), view("w2", "top", clock())],
        [],
        clock(),
    )
    assert await rec.products("shop", "v", popular(3), clock()) == ["top", "a", "b"]
    assert await rec.products("shop", "v", popular(), clock()) == ["top", "a", "b", "c", "d", "e"]


async def test_old_events_do_not_count_as_popular(services: Services, clock: Clock) -> None:
    rec = recommender(services)
    await rec.record_events("shop", [view("v", "stale", clock() - 8 * DAY)], [], clock())
    assert await rec.products("shop", "v", popular(), clock()) == []
    # ... but the visitor did view it
    recent = {"strategy": "recently_viewed", "limit": 5}
    assert await rec.products("shop", "v", recent, clock()) == ["stale"]


async def test_popular_in_segment(services: Services, clock: Clock) -> None:
    rec = recommender(services)
    t = clock()
    await rec.record_events(
        "shop",
        [view("vip1", "watch", t), view("vip2", "watch", t), purchase("vip2", ["ring"], t)],
        ["vips", "all"],
        t,
    )
    await rec.record_events("shop", [view(f"n{i}", "socks", t) for i in range(9)], ["all"], t)
    in_vips = {"strategy": "popular_in_segment", "segment": "vips", "limit": 5}
    assert await rec.products("shop", "x", in_vips, t) == ["ring", "watch"]
    in_all = {**in_vips, "segment": "all"}
    assert await rec.products("shop", "x", in_all, t) == ["socks", "ring", "watch"]
    assert await rec.products("shop", "x", popular(), t) == ["socks", "ring", "watch"]
    assert await rec.products("shop", "x", {**in_vips, "segment": "nobody"}, t) == []
    clock.advance(7 * DAY)
    assert await rec.products("shop", "x", in_vips, clock()) == []


async def test_rankings_are_cached_per_process(services: Services, clock: Clock) -> None:
    rec = recommender(services, cache_seconds=60)
    await rec.record_events("shop", [view("v", "a", clock())], [], clock())
    assert await rec.products("shop", "v", popular(), clock()) == ["a"]
    await rec.record_events("shop", [view("v", "b", clock()), view("w", "b", clock())], [], clock())
    clock.advance(59)
    assert await rec.products("shop", "v", popular(), clock()) == ["a"]
    clock.advance(1)
    # stale: still served while one background read renews it, then the new ranking
    assert await rec.products("shop", "v", popular(), clock()) == ["a"]
    await rec.rec.renewed()
    assert await rec.products("shop", "v", popular(), clock()) == ["b", "a"]


async def test_unusable_payloads_give_nothing(services: Services, clock: Clock) -> None:
    rec = recommender(services)
    await rec.record_events("shop", [view("v", "a", clock())], [], clock())
    for payload in (
        {"strategy": "popular", "limit": 0},
        {"strategy": "popular", "limit": True},
        {"strategy": "nope"},
        {"strategy": "popular_in_segment"},
    ):
        assert await rec.products("shop", "v", payload, clock()) == []
    assert await rec.products("shop", "v", {"strategy": "popular"}, clock()) == ["a"]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["a", "b"], [("a", 1.0), ("b", 1.0)]),
        ([{"product_id": "a", "quantity": 3}, {"id": "b"}], [("a", 3.0), ("b", 1.0)]),
        ([{"quantity": 2}, {"product_id": "a", "quantity": 0}, 5, "", None], []),
        (None, []),
    ],
)
def test_purchased_items(items: Any, expected: list[tuple[str, float]]) -> None:
    assert list(purchased(items)) == expected
