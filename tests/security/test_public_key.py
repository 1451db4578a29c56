"""Findings of issue 10 with only the public site key (it is in every page's source):
trusted events, reading other visitors, markup through product ids, hostile JSON."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from segserver import decide
from segserver.config import Settings
from segserver.http.keys import SERVICES
from tests.conftest import Clock, admin_headers, snapshot
from tests.security.helpers import (
    Client,
    admin_post,
    app_with,
    make_site,
    server_key,
    site_key,
)

VIP = {"all": [{"attr": "total_spent", "op": "gte", "value": 500},
               {"attr": "orders", "op": "gte", "value": 3}]}  # fmt: skip


async def vip_shop(client: Client) -> dict[str, Any]:
    site = await make_site(client, prebuilt=False)  # `tags` is a built-in attribute
    base = "/v1/admin/sites/shop"
    await admin_post(client, f"{base}/segments", {"id": "high_value_customers",
                                                  "status": "active", "rule": VIP})  # fmt: skip
    await admin_post(client, f"{base}/content", {"id": "vip", "kind": "banner",
                                                 "payload": {"title": "VIP"}})  # fmt: skip
    await admin_post(client, f"{base}/placements", {"id": "hero", "kind": "banner"})
    await admin_post(client, f"{base}/campaigns", {
        "id": "vip", "placement": "hero", "status": "active",
        "audience": {"include": ["high_value_customers"]},
        "variants": [{"id": "a", "content": "vip"}]})  # fmt: skip
    return site


ATTACK = [{"type": "purchase", "properties": {"value": 999}}] * 3 + [
    {"type": "identify", "properties": {"tags": ["vip"]}}]  # fmt: skip


async def test_public_key_cannot_buy_its_way_into_a_segment(
    settings: Settings, clock: Clock
) -> None:
    async with app_with(settings, clock) as client:
        site = await vip_shop(client)
        resp = await client.post("/v1/context", headers=site_key(site), json={
            "visitor_id": "mallory", "events": ATTACK, "placements": ["hero"]})  # fmt: skip
        assert resp.status == 200
        answer = await resp.json()
        assert [e["error"]["code"] for e in answer["events"]] == ["server_key_required"] * 4
        assert "high_value_customers" not in answer["segments"]
        assert answer["decisions"]["hero"] is None
        # the events API says 403 for the same events with the public key ...
        batch = [{"visitor_id": "mallory", **e} for e in ATTACK]
        sent = await client.post("/v1/events", headers=site_key(site), json=batch)
        assert sent.status == 403
        assert (await sent.json())["error"]["code"] == "server_key_required"
        # ... and takes them from the shop's back end (the server key)
        sent = await client.post("/v1/events", headers=server_key(site), json=batch)
        assert sent.status == 202, await sent.text()
        resp = await client.post("/v1/context", headers=site_key(site), json={
            "visitor_id": "mallory", "placements": ["hero"]})  # fmt: skip
        assert (await resp.json())["decisions"]["hero"]["campaign"] == "vip"


async def test_public_key_cannot_read_another_visitors_segments(
    client: Client, site: dict[str, Any]
) -> None:
    path = "/v1/visitors/someone/segments"
    assert (await client.get(path)).status == 401
    resp = await client.get(path, headers=site_key(site))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "server_key_required"
    assert (await client.get(path, headers=server_key(site))).status == 200
    wrong = {"Authorization": "Bearer srv_shop_" + "0" * 64}
    assert (await client.get(path, headers=wrong)).status == 401


XSS = "<img src=x onerror=alert(1)>"


async def test_markup_in_product_ids_never_reaches_recommendations(
    client: Client, site: dict[str, Any], settings: Settings
) -> None:
    before = snapshot(settings.redis_url, settings.key_prefix)
    bought = await client.post(
        "/v1/events",
        headers=server_key(site),
        json=[
            {
                "visitor_id": "m",
                "type": "purchase",
                "properties": {"value": 1, "items": [{"product_id": XSS, "quantity": 1e308}]},
            }
        ],
    )
    assert bought.status == 400
    assert (await bought.json())["error"]["message"].startswith(
        "events[0].properties.items[0].product_id"
    )
    huge = await client.post(
        "/v1/events",
        headers=server_key(site),
        json=[
            {
                "visitor_id": "m",
                "type": "purchase",
                "properties": {"value": 1, "items": [{"product_id": "p1", "quantity": 1e308}]},
            }
        ],
    )
    assert huge.status == 400
    assert "items[0].quantity: must be at most" in (await huge.json())["error"]["message"]
    assert snapshot(settings.redis_url, settings.key_prefix) == before
    viewed = await client.post("/v1/context", headers=site_key(site), json={
        "visitor_id": "m", "events": [{"type": "product_view",
                                       "properties": {"product_id": XSS}}]})  # fmt: skip
    assert (await viewed.json())["events"][0]["error"]["code"] == "invalid_product_id"


async def test_hostile_json_is_400_and_stores_nothing(
    client: Client, site: dict[str, Any], settings: Settings
) -> None:
    before = snapshot(settings.redis_url, settings.key_prefix)
    event = b'{"type": "page_view"}'
    bodies = {
        "surrogate in a placement": b'{"visitor_id": "v", "events": [' + event
        + b'], "placements": ["\\udc00"]}',
        "surrogate in an item": b'{"visitor_id": "v", "events": [' + event + b', {"type": '
        b'"add_to_cart", "properties": {"product_id": "p", "quantity": 1, "x": ["\\udc00"]}}]}',
        "400-digit quantity": b'{"visitor_id": "v", "events": [' + event + b', {"type": '
        b'"add_to_cart", "properties": {"product_id": "p", "quantity": 1' + b"0" * 400 + b"}}]}",
        "10k-deep JSON": b'{"visitor_id": "v", "events": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        "NaN": b'{"visitor_id": "v", "events": [{"type": "checkout_start", '
        b'"properties": {"value": NaN}}]}',
    }  # fmt: skip
    for case, body in bodies.items():
        resp = await client.post("/v1/context", headers=site_key(site), data=body)
        assert resp.status == 400, (case, await resp.text())
        assert snapshot(settings.redis_url, settings.key_prefix) == before, case
    # the message names the field
    resp = await client.post(
        "/v1/context", headers=site_key(site), data=bodies["400-digit quantity"]
    )
    assert (await resp.json())["error"]["message"].startswith("events[1].properties.quantity:")


async def test_deep_rules_are_refused_with_a_path(client: Client, site: dict[str, Any]) -> None:
    leaf: dict[str, Any] = {"attr": "orders", "op": "gt", "value": 0}

    def nested(depth: int) -> dict[str, Any]:
        rule = leaf
        for _ in range(depth):
            rule = {"not": rule}
        return rule

    base = "/v1/admin/sites/shop/segments"
    deep = await client.post(base, headers=admin_headers(), json={"id": "d", "rule": nested(150)})
    assert deep.status == 400
    assert (await deep.json())["error"]["code"] == "too_deep"
    over = await client.post(base, headers=admin_headers(), json={"id": "d", "rule": nested(30)})
    assert over.status == 422
    assert "rules nest at most 24" in (await over.json())["error"]["message"]
    ok = await client.post(base, headers=admin_headers(), json={"id": "d", "rule": nested(20)})
    assert ok.status == 201


async def test_huge_purchase_values_are_refused_and_the_visitor_view_works(
    client: Client, site: dict[str, Any]
) -> None:
    ev = [{"visitor_id": "rich", "type": "purchase", "properties": {"value": 1e300}}]
    for _ in range(2):
        resp = await client.post("/v1/events", headers=server_key(site), json=ev)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "out_of_range"
    ok = [{"visitor_id": "rich", "type": "purchase", "properties": {"value": 1e9}}] * 2
    assert (await client.post("/v1/events", headers=server_key(site), json=ok)).status == 202
    view = await client.get("/v1/admin/sites/shop/visitors/rich", headers=admin_headers())
    assert view.status == 200, await view.text()


async def test_a_token_counts_once_and_is_not_keyed_by_the_admin_token(
    settings: Settings, clock: Clock
) -> None:
    async with app_with(settings, clock, decision_token_ttl_seconds=3600) as client:
        site = await vip_shop(client)
        await client.post("/v1/events", headers=server_key(site),
                          json=[{"visitor_id": "ann", **e} for e in ATTACK[:3]])  # fmt: skip
        resp = await client.post("/v1/context", headers=site_key(site), json={
            "visitor_id": "ann", "placements": ["hero"]})  # fmt: skip
        token = (await resp.json())["decisions"]["hero"]["token"]
        # the MAC key is its own secret: the old derivation from the admin token fails
        old = hashlib.sha256(f"segserver-tokens:{settings.admin_token}".encode()).digest()
        assert decide.read_token(old, token) is None
        click = {"visitor_id": "ann", "type": "click", "properties": {"token": token}}
        for _ in range(50):
            sent = await client.post("/v1/events", headers=site_key(site), json=[click])
            assert sent.status == 202
        clock.advance(3601)  # expired: counts nothing, even a first impression
        impression = {**click, "type": "impression"}
        await client.post("/v1/events", headers=site_key(site), json=[impression])
        results = await client.get("/v1/admin/sites/shop/campaigns/vip/results",
                                    headers=admin_headers())  # fmt: skip
        (arm,) = (await results.json())["variants"]
        assert (arm["clicks"], arm["impressions"]) == (1, 0)
        services = client.app[SERVICES]
        feedback = await services.clients.raw.hgetall(services.keys.visitor("shop", "ann").feedback)
        assert len(feedback) == 1


def test_the_spec_is_served_and_covers_every_route() -> None:
    from aiohttp import web

    from segserver.http.openapi import document

    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert orjson.loads(orjson.dumps(doc)) == doc
    assert set(doc["components"]["securitySchemes"]) == {"siteKey", "siteKeyQuery", "serverKey",
                                                         "adminToken"}  # fmt: skip
    from segserver.http import app as app_module

    app = web.Application()
    for mod in (app_module.admin, app_module.public, app_module.segments_routes,
                app_module.decisions_routes, app_module.analytics_routes, app_module.jobs_routes,
                app_module.triggers_routes, app_module.results_routes, app_module.openapi,
                app_module.console_routes,
                app_module.ops):  # fmt: skip
        app.add_routes(mod.routes)
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}  # fmt: skip
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert served == documented
    for path, item in doc["paths"].items():
        for op in item.values():
            assert "400" in op["responses"] or "{" not in path, path
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"]["$ref"].endswith(
                        "/ErrorBody"
                    )
