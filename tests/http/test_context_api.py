"""POST /v1/context and GET /v1/visitors/{id}/segments against the real app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from segserver import decide
from tests.conftest import Clock, admin_headers, server_headers

Client = TestClient[Any, Any]
BASE = "/v1/admin/sites/shop"


async def admin(client: Client, path: str, body: dict[str, Any], status: int = 201) -> Any:
    resp = await client.post(f"{BASE}/{path}", headers=admin_headers(), json=body)
    assert resp.status == status, await resp.text()
    return await resp.json()


@pytest.fixture
async def shop(client: Client, site: dict[str, Any]) -> dict[str, Any]:
    segs = {
        "new": {"attr": "sessions", "op": "lte", "value": 1},
        "carters": {"attr": "cart_items", "op": "gt", "value": 0},
        "big": {"attr": "total_spent", "op": "gte", "value": 500},
    }
    for sid, rule in segs.items():
        await admin(client, "segments", {"id": sid, "status": "active", "rule": rule,
                                         "priority": {"big": 9}.get(sid, 1)})  # fmt: skip
    for cid, title in (("welcome", "Welcome!"), ("rescue", "Your cart misses you"),
                       ("vip", "VIP"), ("hero_default", "Spring sale")):  # fmt: skip
        kind = "banner" if cid in ("vip", "hero_default") else "popup"
        await admin(client, "content", {"id": cid, "kind": kind,
                                        "payload": {"title": title, "body": "..."}})  # fmt: skip
    # content first: a placement's default content must exist
    await admin(client, "placements", {"id": "home_popup", "kind": "popup"})
    await admin(client, "placements", {"id": "hero", "kind": "banner",
                                       "default_content": "hero_default"})  # fmt: skip
    await admin(client, "campaigns", {
        "id": "welcome", "placement": "home_popup", "status": "active", "priority": 10,
        "audience": {"include": ["new"]}, "variants": [{"id": "a", "content": "welcome"}],
        "caps": [{"per": "session", "max": 1}], "group": "popups"})  # fmt: skip
    await admin(client, "campaigns", {
        "id": "rescue", "placement": "home_popup", "status": "active", "priority": 50,
        "audience": {"include": ["carters"], "exclude": ["big"]},
        "variants": [{"id": "a", "content": "rescue"}], "group": "popups"})  # fmt: skip
    await admin(
        client,
        "campaigns",
        {
            "id": "vip",
            "placement": "hero",
            "status": "active",
            "priority": 5,
            "audience": {"include": ["big"]},
            "variants": [{"id": "a", "content": "vip"}],
        },
    )
    return site


def key(site: dict[str, Any]) -> dict[str, str]:
    return {"X-Segserver-Key": site["site_key"]}


async def context(client: Client, site: dict[str, Any], vid: str, events: list[Any] | None = None,
                  placements: tuple[str, ...] = ("home_popup", "hero"),
                  **extra: Any) -> dict[str, Any]:  # fmt: skip
    resp = await client.post(
        "/v1/context",
        headers=key(site),
        json={"visitor_id": vid, "events": events or [], "placements": list(placements), **extra},
    )
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_new_visitor_gets_the_welcome_popup(client: Client, shop: dict[str, Any]) -> None:
    answer = await context(client, shop, "ann", [{"type": "page_view", "event_id": "p1"}])
    assert answer["segments"] == ["new"]
    assert answer["events"] == [{"index": 0, "status": "stored"}]
    popup = answer["decisions"]["home_popup"]
    assert (popup["campaign"], popup["variant"]) == ("welcome", "a")
    assert popup["content"] == {"id": "welcome", "kind": "popup",
                                "payload": {"title": "Welcome!", "body": "..."}}  # fmt: skip
    assert popup["token"]
    # no campaign for the banner: its default content, without a campaign
    assert answer["decisions"]["hero"] == {"campaign": None, "variant": None, "token": None,
        "content": {"id": "hero_default", "kind": "banner",
                    "payload": {"title": "Spring sale", "body": "..."}}}  # fmt: skip
    assert answer["degraded"] is False
    # capped at one per session: the next page view of the session shows nothing
    again = await context(client, shop, "ann", [{"type": "page_view"}])
    assert again["decisions"]["home_popup"] is None


async def test_priority_audience_and_explain(client: Client, shop: dict[str, Any],
                                             clock: Clock) -> None:  # fmt: skip
    events = [
        {"type": "page_view"},
        {"type": "add_to_cart", "properties": {"product_id": "p", "price": 20}},
    ]
    answer = await context(client, shop, "bob", events)
    assert set(answer["segments"]) == {"new", "carters"}
    assert answer["decisions"]["home_popup"]["campaign"] == "rescue"  # 50 beats 10
    # a big spender is excluded from the rescue, wins the VIP banner
    clock.advance(3600)
    # a purchase comes from the shop's back end (the server key), not the page
    bought = await client.post("/v1/events", headers=server_headers(shop), json=[
        {"visitor_id": "bob", "type": "purchase", "properties": {"value": 900}}])  # fmt: skip
    assert bought.status == 202, await bought.text()
    rich = await context(client, shop, "bob", [
        {"type": "add_to_cart", "properties": {"product_id": "q"}}], explain=True)  # fmt: skip
    assert rich["segments"][0] == "big"  # by segment priority
    assert rich["decisions"]["hero"]["campaign"] == "vip"
    assert "explain" not in rich  # explain needs the admin token (or the site's QA option)
    resp = await client.post("/v1/context", headers={**key(shop), **admin_headers()}, json={
        "visitor_id": "bob", "placements": ["home_popup"], "explain": True})  # fmt: skip
    explained = (await resp.json())["explain"]
    reasons = {c["campaign"]: c["reason"] for c in explained["placements"]["home_popup"]}
    assert reasons["rescue"] == "audience not matched"
    assert reasons["welcome"] == "audience not matched"
    by_segment = {s["segment"]: s for s in explained["segments"]}
    assert by_segment["big"]["matched"] is True
    assert by_segment["new"]["matched"] is False


async def test_concurrent_page_views_never_exceed_a_cap(client: Client, shop: dict[str, Any],
                                                        site: dict[str, Any]) -> None:  # fmt: skip
    await admin(client, "placements", {"id": "flash_slot", "kind": "banner"})
    await admin(
        client,
        "campaigns",
        {
            "id": "flash",
            "placement": "flash_slot",
            "status": "active",
            "priority": 1,
            "variants": [{"id": "a", "content": "vip"}],
            "caps": [{"per": "day", "max": 3}],
        },
    )
    answers = await asyncio.gather(*(
        context(client, shop, "cap", [{"type": "page_view"}], placements=("flash_slot",))
        for _ in range(40)))  # fmt: skip
    served = [a for a in answers if a["decisions"]["flash_slot"] is not None]
    assert len(served) == 3


async def test_unknown_placement_is_null_and_segments_endpoint(
    client: Client, shop: dict[str, Any]
) -> None:
    answer = await context(client, shop, "cy", [{"type": "page_view"}], placements=("nowhere",))
    assert answer["decisions"] == {"nowhere": None}
    resp = await client.get("/v1/visitors/cy/segments", headers=server_headers(shop))
    assert (await resp.json()) == {"visitor_id": "cy", "segments": ["new"], "degraded": False}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "visitor_id"),
        ({"visitor_id": "v", "placements": "hero"}, "placements"),
        ({"visitor_id": "v", "explain": "yes"}, "explain"),
        ({"visitor_id": "v", "colour": 1}, "colour"),
    ],
)
async def test_bad_context_bodies(client: Client, shop: dict[str, Any], body: Any,
                                  field: str) -> None:  # fmt: skip
    resp = await client.post("/v1/context", headers=key(shop), json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith(field)


def test_split_is_sticky_and_within_one_percent() -> None:
    c = decide.Campaign("ab", "p", 1, (decide.Variant("a", "x", 70), decide.Variant("b", "y", 30)),
                        holdout=10)  # fmt: skip
    ids = [f"visitor-{i}" for i in range(100_000)]
    held = sum(decide.in_holdout(c, v) for v in ids)
    variants = [decide.variant_of(c, v).id for v in ids]
    assert abs(held / len(ids) - 0.10) < 0.01
    assert abs(variants.count("a") / len(ids) - 0.70) < 0.01
    assert all(decide.variant_of(c, v).id == variants[i] for i, v in enumerate(ids[:1000]))


async def test_recommendations_and_results_through_the_api(
    client: Client, shop: dict[str, Any], clock: Clock
) -> None:
    await admin(client, "placements", {"id": "recs", "kind": "recommendations"})
    await admin(
        client,
        "content",
        {
            "id": "rv",
            "kind": "recommendations",
            "payload": {"strategy": "recently_viewed", "limit": 2},
        },
    )
    await admin(client, "campaigns", {
        "id": "recent", "placement": "recs", "status": "active",
        "variants": [{"id": "a", "content": "rv"}], "goals": ["purchase"]})  # fmt: skip
    views = [{"type": "product_view", "properties": {"product_id": p}} for p in ("p1", "p2", "p3")]
    await context(client, shop, "dee", views, placements=("recs",))
    answer = await context(client, shop, "dee", placements=("recs",))
    recs = answer["decisions"]["recs"]
    assert recs["content"]["products"] == ["p3", "p2"]
    token = recs["token"]
    clock.advance(60)  # a conversion counts after the exposure
    sent = await client.post("/v1/events", headers=server_headers(shop), json=[
        {"visitor_id": "dee", "type": "impression", "properties": {"token": token}},
        {"visitor_id": "dee", "type": "click", "properties": {"token": token}},
        {"visitor_id": "dee", "type": "purchase", "properties": {"value": 30}}])  # fmt: skip
    assert sent.status == 202
    resp = await client.get(f"{BASE}/campaigns/recent/results", headers=admin_headers())
    assert resp.status == 200, await resp.text()
    results = await resp.json()
    (arm,) = results["variants"]
    assert (arm["id"], arm["exposed"], arm["impressions"], arm["clicks"], arm["conversions"]) == (
        "a",
        1,
        1,
        1,
        1,
    )


async def test_site_policy_limits_interruptive_decisions(client: Client,
                                                         shop: dict[str, Any]) -> None:  # fmt: skip
    bad = await client.put(f"{BASE}/policy", headers=admin_headers(),
                           json={"interruptive_per_session": -1})  # fmt: skip
    assert bad.status == 400
    assert "interruptive_per_session" in (await bad.json())["error"]["message"]
    ok = await client.put(f"{BASE}/policy", headers=admin_headers(),
                          json={"interruptive_per_session": 0})  # fmt: skip
    assert ok.status == 200
    assert (await ok.json())["interruptive_per_session"] == 0
    answer = await context(client, shop, "eli", [{"type": "page_view"}])
    assert answer["decisions"]["home_popup"] is None  # no popup may interrupt this session


async def test_static_segment_members_are_in_the_answer(client: Client,
                                                        shop: dict[str, Any]) -> None:  # fmt: skip
    await context(client, shop, "stan", [{"type": "page_view"}])
    await admin(client, "segments", {"id": "vips", "type": "static", "status": "active",
                                     "priority": 99})  # fmt: skip
    resp = await client.post(f"{BASE}/segments/vips/members", headers=admin_headers(),
                             json={"visitor_ids": ["stan"]})  # fmt: skip
    assert resp.status < 300, await resp.text()
    answer = await context(client, shop, "stan")
    assert answer["segments"][0] == "vips"  # the highest priority comes first
    other = await context(client, shop, "ann", [{"type": "page_view"}])
    assert "vips" not in other["segments"]
