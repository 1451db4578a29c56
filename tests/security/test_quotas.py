"""Findings of issue 10 on volume: one visitor's flood, new-visitor floods and
dictionary growth are bounded; over a quota a page view degrades (defaults, nothing
stored, Retry-After) and an event post gets 429 with Retry-After, never a 5xx."""

from __future__ import annotations

import redis

from segserver.config import Settings
from segserver.http.keys import SERVICES
from segserver.trust.quotas import Buckets
from tests.conftest import Clock, admin_headers
from tests.security.helpers import app_with, make_site, server_key, site_key

PAGE_VIEWS = [{"type": "page_view"}] * 100


async def test_one_visitors_flood_is_cut_and_page_views_degrade(
    settings: Settings, clock: Clock
) -> None:
    async with app_with(settings, clock, quota_visitor_events_per_minute=300) as client:
        site = await make_site(client, prebuilt=False)
        statuses, stored = [], 0
        for _ in range(100):  # 100 requests x 100 events, as in the finding
            resp = await client.post(
                "/v1/context",
                headers=site_key(site),
                json={"visitor_id": "flood", "events": PAGE_VIEWS},
            )
            assert resp.status == 200
            answer = await resp.json()
            stored += sum(e["status"] == "stored" for e in answer["events"])
            statuses.append(answer["degraded"])
            if answer["degraded"]:
                assert int(resp.headers["Retry-After"]) >= 1
                assert {e["status"] for e in answer["events"]} == {"rate_limited"}
        assert stored == 300
        assert statuses.count(True) == 97
        flood = [{"visitor_id": "flood", "type": "page_view"}]
        resp = await client.post("/v1/events", headers=site_key(site), json=flood)
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"]["code"] == "visitor_quota_exceeded"
        clock.advance(60)  # a minute later the bucket has refilled
        resp = await client.post("/v1/events", headers=site_key(site), json=flood)
        assert resp.status == 202


async def test_new_visitor_floods_are_cut_site_wide(settings: Settings, clock: Clock) -> None:
    async with app_with(settings, clock, quota_site_new_visitors_per_minute=150,
                        quota_sync_seconds=0) as client:  # fmt: skip
        site = await make_site(client, prebuilt=False)
        sync = client.app[SERVICES].quota_sync
        first = [{"visitor_id": "regular", "type": "page_view"}]
        assert (await client.post("/v1/events", headers=server_key(site), json=first)).status == 202
        await sync.run_once(clock())  # the site's counter before the flood
        for batch in range(2):
            events = [{"visitor_id": f"n{batch}-{i}", "type": "page_view"} for i in range(100)]
            sent = await client.post("/v1/events", headers=server_key(site), json=events)
            assert sent.status == 202
        await sync.run_once(clock())  # off the request path: reads the ordinal counters
        events = [{"visitor_id": f"n9-{i}", "type": "page_view"} for i in range(100)]
        resp = await client.post("/v1/events", headers=server_key(site), json=events)
        assert resp.status == 429
        assert (await resp.json())["error"]["code"] == "site_quota_exceeded"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        page = await client.post("/v1/context", headers=site_key(site), json={
            "visitor_id": "n9-0", "events": [{"type": "page_view"}]})  # fmt: skip
        assert page.status == 200 and (await page.json())["degraded"] is True
        clock.advance(61)
        await sync.run_once(clock())
        resp = await client.post("/v1/events", headers=server_key(site), json=events)
        assert resp.status == 202


async def test_site_events_are_counted_in_redis_with_limits(
    settings: Settings, clock: Clock
) -> None:
    async with app_with(settings, clock, quota_site_events_per_minute=150,
                        quota_sync_seconds=0) as client:  # fmt: skip
        site = await make_site(client, prebuilt=False)
        sync = client.app[SERVICES].quota_sync
        for i in range(2):
            events = [{"visitor_id": f"e{i}", "type": "page_view"}] * 100
            assert (await client.post("/v1/events", headers=server_key(site),
                                      json=events)).status == 202  # fmt: skip
        await sync.run_once(clock())
        resp = await client.post("/v1/events", headers=server_key(site),
                                 json=[{"visitor_id": "x", "type": "page_view"}])  # fmt: skip
        assert resp.status == 429


async def test_dictionaries_are_capped_and_page_views_keep_working(
    settings: Settings, clock: Clock
) -> None:
    async with app_with(settings, clock, max_dictionary_codes=16) as client:
        site = await make_site(client, prebuilt=False)
        for i in range(40):
            resp = await client.post(
                "/v1/context",
                headers=site_key(site),
                json={
                    "visitor_id": f"u{i}",
                    "events": [{"type": "page_view", "properties": {"utm_source": f"src{i}"}}],
                },
            )
            assert resp.status == 200
            assert (await resp.json())["events"][0]["status"] == "stored"
        keys = client.app[SERVICES].keys
        with redis.Redis.from_url(settings.redis_url) as r:
            values = r.lrange(keys.dictionary("shop", "utm_source")[1], 0, -1)
        assert len(values) == 17 and values[-1] == b"(other)"
        view = await client.get("/v1/admin/sites/shop/visitors/u39", headers=admin_headers())
        assert (await view.json())["attributes"]["utm_source"] == "(other)"


def test_buckets_refill_and_forget_the_oldest_keys() -> None:
    b = Buckets(60, max_keys=2)
    assert b.take("a", 60, 0.0) == 0
    assert b.take("a", 1, 0.0) == 1.0  # one token a second
    assert b.take("a", 1, 1.0) == 0
    b.take("b", 1, 1.0)
    b.take("c", 1, 1.0)  # "a" is dropped: least recently used
    assert b.take("a", 60, 1.0) == 0
    assert Buckets(0).take("x", 10**6, 0.0) == 0  # 0: no limit


async def test_key_and_visitor_request_quotas(settings: Settings, clock: Clock) -> None:
    async with app_with(settings, clock, quota_key_requests_per_minute=5,
                        quota_visitor_requests_per_minute=2) as client:  # fmt: skip
        site = await make_site(client, prebuilt=False)
        page = {"visitor_id": "one", "events": [{"type": "page_view"}]}
        answers = [await (await client.post("/v1/context", headers=site_key(site),
                                            json=page)).json() for _ in range(3)]  # fmt: skip
        assert [a["degraded"] for a in answers] == [False, False, True]  # 2 per visitor
        for i in range(2):
            ev = [{"visitor_id": f"x{i}", "type": "page_view"}]
            assert (await client.post("/v1/events", headers=site_key(site), json=ev)).status == 202
        ev = [{"visitor_id": "x9", "type": "page_view"}]
        resp = await client.post("/v1/events", headers=site_key(site), json=ev)
        assert resp.status == 429  # 5 per key: 3 page views and 2 posts
        assert (await resp.json())["error"]["code"] == "key_quota_exceeded"
        # the server key has its own bucket
        assert (await client.post("/v1/events", headers=server_key(site), json=ev)).status == 202
