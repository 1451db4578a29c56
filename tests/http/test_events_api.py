"""POST /v1/events and the visitor admin API against the real app and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from segserver.config import Settings
from tests.conftest import Clock, admin_headers, server_headers, snapshot

Client = TestClient[Any, Any]


def key(site: dict[str, Any]) -> dict[str, str]:
    """POST /v1/events is the shop back end's: the server key (trusted types too)."""
    return server_headers(site)


async def profile(client: Client, vid: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/admin/sites/shop/visitors/{vid}", headers=admin_headers())
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_page_view_updates_profile(client: Client, site: dict[str, Any]) -> None:
    resp = await client.post(
        "/v1/events",
        headers=key(site),
        json={
            "events": [
                {
                    "visitor_id": "alice",
                    "type": "page_view",
                    "properties": {"url": "/", "country": "DE", "utm_source": "news"},
                }
            ]
        },
    )
    assert resp.status == 202
    assert (await resp.json())["results"] == [{"index": 0, "status": "stored"}]
    p = await profile(client, "alice")
    assert p["attributes"]["page_views"] == 1
    assert p["attributes"]["sessions"] == 1
    assert p["attributes"]["country"] == "DE"
    assert p["attributes"]["source"] == "news"
    assert p["version"] == 1


async def test_500_concurrent_page_views_count_exactly(
    client: Client, site: dict[str, Any]
) -> None:
    async def one(i: int) -> int:
        resp = await client.post(
            "/v1/events",
            headers=key(site),
            json={"events": [{"visitor_id": "busy", "type": "page_view", "event_id": f"pv-{i}"}]},
        )
        return resp.status

    statuses = await asyncio.gather(*(one(i) for i in range(500)))
    assert statuses == [202] * 500
    p = await profile(client, "busy")
    assert p["attributes"]["page_views"] == 500
    assert p["version"] == 500


async def test_replayed_batch_changes_nothing(
    client: Client, site: dict[str, Any], settings: Settings
) -> None:
    batch = {
        "events": [
            {
                "visitor_id": "bob",
                "type": "add_to_cart",
                "event_id": "a1",
                "properties": {"product_id": "p1", "price": 20, "quantity": 2},
            },
            {
                "visitor_id": "bob",
                "type": "purchase",
                "event_id": "a2",
                "properties": {"value": 40},
            },
        ]
    }
    first = await client.post("/v1/events", headers=key(site), json=batch)
    assert [r["status"] for r in (await first.json())["results"]] == ["stored", "stored"]
    before = snapshot(settings.redis_url, settings.key_prefix)
    again = await client.post("/v1/events", headers=key(site), json=batch)
    assert again.status == 202
    assert [r["status"] for r in (await again.json())["results"]] == ["duplicate", "duplicate"]
    assert snapshot(settings.redis_url, settings.key_prefix) == before
    p = await profile(client, "bob")
    assert p["attributes"]["orders"] == 1
    assert p["attributes"]["total_spent"] == 40


async def test_duplicate_event_id_inside_one_batch(client: Client, site: dict[str, Any]) -> None:
    ev = {"visitor_id": "carl", "type": "page_view", "event_id": "same"}
    resp = await client.post("/v1/events", headers=key(site), json={"events": [ev, ev]})
    assert [r["status"] for r in (await resp.json())["results"]] == ["stored", "duplicate"]
    assert (await profile(client, "carl"))["attributes"]["page_views"] == 1


async def test_script_flush_then_event_still_works(
    client: Client, site: dict[str, Any], raw_redis: Any
) -> None:
    ev = {"visitor_id": "dora", "type": "page_view"}
    assert (await client.post("/v1/events", headers=key(site), json={"events": [ev]})).status == 202
    await raw_redis.script_flush()
    resp = await client.post("/v1/events", headers=key(site), json={"events": [ev]})
    assert resp.status == 202
    assert (await profile(client, "dora"))["attributes"]["page_views"] == 2
    ready = await client.get("/readyz")
    assert ready.status == 200


async def test_mixed_batch_stores_valid_and_reports_invalid(
    client: Client, site: dict[str, Any]
) -> None:
    resp = await client.post(
        "/v1/events",
        headers=key(site),
        json={
            "events": [
                {"visitor_id": "eve", "type": "page_view"},
                {"visitor_id": "eve", "type": "teleport"},
                {"visitor_id": "eve", "type": "purchase", "properties": {"value": "lots"}},
                {"visitor_id": "eve", "type": "product_view", "properties": {"product_id": "p9"}},
            ]
        },
    )
    assert resp.status == 202
    results = (await resp.json())["results"]
    assert [r["status"] for r in results] == ["stored", "rejected", "rejected", "stored"]
    assert results[1]["error"]["code"] == "unknown_event_type"
    assert "events[2].properties.value" in results[2]["error"]["message"]
    p = await profile(client, "eve")
    assert p["attributes"]["page_views"] == 1
    assert p["attributes"]["product_views"] == 1
    assert "orders" not in p["attributes"]


async def test_sessions_start_after_the_gap(
    client: Client, site: dict[str, Any], clock: Clock
) -> None:
    async def view() -> None:
        resp = await client.post(
            "/v1/events",
            headers=key(site),
            json={"events": [{"visitor_id": "fay", "type": "page_view"}]},
        )
        assert resp.status == 202

    await view()
    clock.advance(1800)  # exactly the gap: same session
    await view()
    clock.advance(1801)  # more than 30 minutes: a new one
    await view()
    p = await profile(client, "fay")
    assert p["attributes"]["page_views"] == 3
    assert p["attributes"]["sessions"] == 2


async def test_identify_sets_declared_and_builtin_attributes(
    client: Client, site: dict[str, Any]
) -> None:
    resp = await client.post(
        "/v1/events",
        headers=key(site),
        json={
            "events": [
                {
                    "visitor_id": "gus",
                    "type": "identify",
                    "properties": {
                        "points": 120,
                        "vip": True,
                        "birthday": "1990-02-28",
                        "country": "AT",
                        "interests": ["running", "hiking"],
                        "tags": {"add": ["newsletter"]},
                    },
                },
                {
                    "visitor_id": "gus",
                    "type": "identify",
                    "properties": {"interests": {"remove": ["running"], "add": ["yoga"]}},
                },
                {"visitor_id": "gus", "type": "wishlist_add"},
            ]
        },
    )
    assert [r["status"] for r in (await resp.json())["results"]] == ["stored"] * 3
    attrs = (await profile(client, "gus"))["attributes"]
    assert attrs["points"] == 120
    assert attrs["vip"] is True
    assert attrs["birthday"] == "1990-02-28"
    assert attrs["interests"] == ["hiking", "yoga"]
    assert attrs["tags"] == ["newsletter"]
    assert attrs["wishlist_add_count"] == 1


async def test_delete_visitor_erases_every_key(
    client: Client, site: dict[str, Any], settings: Settings
) -> None:
    await client.post(
        "/v1/events",
        headers=key(site),
        json={"events": [{"visitor_id": "hal", "type": "page_view", "event_id": "x1"}]},
    )
    keys = [k for k in snapshot(settings.redis_url, settings.key_prefix) if b":hal" in k]
    # profile, event ids, membership version and bitmap, history
    assert {k.split(b":")[-2] for k in keys} >= {b"p", b"ev", b"m"}
    resp = await client.delete("/v1/admin/sites/shop/visitors/hal", headers=admin_headers())
    assert resp.status == 204
    left = snapshot(settings.redis_url, settings.key_prefix)
    assert not [k for k in left if b":hal" in k]
    missing = await client.get("/v1/admin/sites/shop/visitors/hal", headers=admin_headers())
    assert missing.status == 404
    again = await client.delete("/v1/admin/sites/shop/visitors/hal", headers=admin_headers())
    assert again.status == 404


# --- bad input: the error, and Redis unchanged --------------------------------------

LONG = "x" * 300
BAD_BODIES: list[tuple[str, Any, str]] = [
    ("unknown type", {"events": [{"visitor_id": "v", "type": "nope"}]}, "events[0].type"),
    ("missing visitor", {"events": [{"type": "page_view"}]}, "events[0].visitor_id"),
    (
        "empty visitor",
        {"events": [{"visitor_id": "", "type": "page_view"}]},
        "events[0].visitor_id",
    ),
    (
        "long visitor",
        {"events": [{"visitor_id": "v" * 129, "type": "page_view"}]},
        "events[0].visitor_id",
    ),
    (
        "unsafe visitor",
        {"events": [{"visitor_id": "a{b}", "type": "page_view"}]},
        "events[0].visitor_id",
    ),
    (
        "non-finite number",
        b'{"events": [{"visitor_id": "v", "type": "purchase", "properties": {"value": 1e999}}]}',
        "events[0].properties.value",
    ),
    (
        "long string",
        {"events": [{"visitor_id": "v", "type": "page_view", "properties": {"url": LONG}}]},
        "events[0].properties.url",
    ),
    (
        "long string, undeclared",
        {"events": [{"visitor_id": "v", "type": "page_view", "properties": {"x": LONG}}]},
        "events[0].properties.x",
    ),
    (
        "future ts",
        {"events": [{"visitor_id": "v", "type": "page_view", "ts": 1_790_000_000 + 3600}]},
        "events[0].ts",
    ),
    (
        "ancient ts",
        {"events": [{"visitor_id": "v", "type": "page_view", "ts": "2001-01-01T00:00:00Z"}]},
        "events[0].ts",
    ),
    (
        "naive ts",
        {"events": [{"visitor_id": "v", "type": "page_view", "ts": "2026-09-21T10:00:00"}]},
        "events[0].ts",
    ),
    (
        "negative price",
        {
            "events": [
                {
                    "visitor_id": "v",
                    "type": "product_view",
                    "properties": {"product_id": "p", "price": -1},
                }
            ]
        },
        "events[0].properties.price",
    ),
    (
        "missing required",
        {"events": [{"visitor_id": "v", "type": "purchase"}]},
        "events[0].properties.value",
    ),
    (
        "counter via identify",
        {"events": [{"visitor_id": "v", "type": "identify", "properties": {"page_views": 5}}]},
        "events[0].properties.page_views",
    ),
    (
        "undeclared attribute",
        {"events": [{"visitor_id": "v", "type": "identify", "properties": {"shoe_size": 5}}]},
        "events[0].properties.shoe_size",
    ),
    ("events not a list", {"events": {"visitor_id": "v"}}, "events"),
    ("empty list", {"events": []}, "events"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_events_are_400_and_change_nothing(
    client: Client, site: dict[str, Any], settings: Settings, case: str, body: Any, field: str
) -> None:
    before = snapshot(settings.redis_url, settings.key_prefix)
    if isinstance(body, bytes):
        resp = await client.post("/v1/events", headers=key(site), data=body)
    else:
        resp = await client.post("/v1/events", headers=key(site), json=body)
    assert resp.status == 400, await resp.text()
    err = (await resp.json())["error"]
    assert field in err["message"], err
    assert err["code"]
    assert snapshot(settings.redis_url, settings.key_prefix) == before


async def test_malformed_json_is_400(
    client: Client, site: dict[str, Any], settings: Settings
) -> None:
    before = snapshot(settings.redis_url, settings.key_prefix)
    resp = await client.post("/v1/events", headers=key(site), data=b'{"events": [')
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"
    assert snapshot(settings.redis_url, settings.key_prefix) == before


async def test_body_over_limit_is_413(
    client: Client, site: dict[str, Any], settings: Settings
) -> None:
    before = snapshot(settings.redis_url, settings.key_prefix)
    big = b'{"events": [' + b" " * settings.max_body_bytes + b"]}"
    resp = await client.post("/v1/events", headers=key(site), data=big)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "body_too_large"
    assert snapshot(settings.redis_url, settings.key_prefix) == before


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_site_key"),
        ({"X-Segserver-Key": "nonsense"}, 401, "invalid_site_key"),
        ({"X-Segserver-Key": "sk_shop_" + "0" * 32}, 401, "invalid_site_key"),
        ({"X-Segserver-Key": "sk_nosuchsite_" + "0" * 32}, 401, "invalid_site_key"),
    ],
)
async def test_wrong_or_missing_key_is_401(
    client: Client,
    site: dict[str, Any],
    settings: Settings,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    before = snapshot(settings.redis_url, settings.key_prefix)
    resp = await client.post(
        "/v1/events", headers=headers, json={"events": [{"visitor_id": "v", "type": "page_view"}]}
    )
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code
    assert snapshot(settings.redis_url, settings.key_prefix) == before


async def test_key_of_another_site_is_403(
    client: Client, site: dict[str, Any], settings: Settings
) -> None:
    other = await client.post(
        "/v1/admin/sites", headers=admin_headers(), json={"id": "other", "name": "Other"}
    )
    other_key = (await other.json())["site_key"]
    before = snapshot(settings.redis_url, settings.key_prefix)
    resp = await client.post(
        "/v1/events?site=shop",
        headers={"X-Segserver-Key": other_key},
        json={"events": [{"visitor_id": "v", "type": "page_view"}]},
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "site_mismatch"
    body = await client.post(
        "/v1/events",
        headers={"X-Segserver-Key": other_key},
        json={"site": "shop", "events": [{"visitor_id": "v", "type": "page_view"}]},
    )
    assert body.status == 403
    assert snapshot(settings.redis_url, settings.key_prefix) == before


async def test_site_key_as_query_parameter_for_beacons(
    client: Client, site: dict[str, Any]
) -> None:
    resp = await client.post(
        f"/v1/events?site_key={site['site_key']}",
        data=b'{"events": [{"visitor_id": "ivy", "type": "page_view"}]}',
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 202
    assert (await profile(client, "ivy"))["attributes"]["page_views"] == 1


async def test_cors_follows_the_sites_origins(client: Client, site: dict[str, Any]) -> None:
    pre = await client.options(
        "/v1/events",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-segserver-key",
        },
    )
    assert pre.status == 204
    assert "X-Segserver-Key" in pre.headers["Access-Control-Allow-Headers"]
    ok = await client.post(
        "/v1/events",
        headers={**key(site), "Origin": "https://shop.example"},
        json={"events": [{"visitor_id": "jo", "type": "page_view"}]},
    )
    assert ok.status == 202
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    bad = await client.post(
        "/v1/events",
        headers={**key(site), "Origin": "https://evil.example"},
        json={"events": [{"visitor_id": "jo", "type": "page_view"}]},
    )
    assert bad.status == 403
    assert (await bad.json())["error"]["code"] == "origin_not_allowed"
    malformed = await client.post("/v1/events", headers={**key(site), "Origin": "https://shop.example"},
                                  data=b"{")  # fmt: skip
    assert malformed.status == 400
    assert malformed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
