"""Sites through the admin API: auth, create, read, change, rotate the key."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import admin_headers, server_headers

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_admin_token"),
        ({"Authorization": "Bearer wrong"}, "invalid_admin_token"),
        ({"Authorization": "Basic dGVzdA=="}, "invalid_admin_token"),
    ],
)
async def test_admin_needs_the_token(client: Client, headers: dict[str, str], code: str) -> None:
    resp = await client.post("/v1/admin/sites", headers=headers, json={"id": "x"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == code
    listing = await client.get("/v1/admin/sites", headers=admin_headers())
    assert (await listing.json())["sites"] == []


async def test_create_read_update(client: Client, site: dict[str, Any]) -> None:
    assert site["site_key"].startswith("sk_shop_")
    got = await client.get("/v1/admin/sites/shop", headers=admin_headers())
    assert (await got.json())["site_key"] == site["site_key"]
    dup = await client.post("/v1/admin/sites", headers=admin_headers(), json={"id": "shop"})
    assert dup.status == 409
    changed = await client.patch(
        "/v1/admin/sites/shop",
        headers=admin_headers(),
        json={
            "name": "Shop 2",
            "origins": ["https://a.example", "http://localhost:3000"],
            "schema": {
                **site["schema"],
                "attributes": [*site["schema"]["attributes"], {"name": "tier", "kind": "category"}],
            },
        },
    )
    assert changed.status == 200, await changed.text()
    body = await changed.json()
    assert body["version"] == 2
    assert body["schema"]["attributes"][-1]["name"] == "tier"
    # identify may now set the new attribute
    resp = await client.post(
        "/v1/events",
        headers=server_headers(site),
        json={"events": [{"visitor_id": "v", "type": "identify", "properties": {"tier": "gold"}}]},
    )
    assert resp.status == 202, await resp.text()
    listing = await client.get("/v1/admin/sites", headers=admin_headers())
    assert (await listing.json())["sites"] == ["shop"]


async def test_schema_is_append_only_and_stale_versions_conflict(
    client: Client, site: dict[str, Any]
) -> None:
    shrink = await client.patch(
        "/v1/admin/sites/shop", headers=admin_headers(), json={"schema": {"attributes": []}}
    )
    assert shrink.status == 400
    assert "appended" in (await shrink.json())["error"]["message"]
    stale = await client.patch(
        "/v1/admin/sites/shop", headers=admin_headers(), json={"name": "x", "version": 99}
    )
    assert stale.status == 409
    assert (await (await client.get("/v1/admin/sites/shop", headers=admin_headers())).json())[
        "name"
    ] == "Shop"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "Bad Id"}, "id"),
        ({"id": "ok", "origins": ["shop.example"]}, "origins[0]"),
        ({"id": "ok", "origins": "https://x.example"}, "origins"),
        ({"id": "ok", "schema": {"attributes": [{"name": "x", "kind": "nope"}]}}, "schema"),
        ({"id": "ok", "name": ""}, "name"),
        ({"id": "ok", "colour": "red"}, "colour"),
    ],
)
async def test_bad_site_bodies(client: Client, body: dict[str, Any], field: str) -> None:
    resp = await client.post("/v1/admin/sites", headers=admin_headers(), json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith(field)
    missing = await client.get("/v1/admin/sites/ok", headers=admin_headers())
    assert missing.status == 404


async def test_rotated_key_replaces_the_old_one(client: Client, site: dict[str, Any]) -> None:
    event = {"events": [{"visitor_id": "v", "type": "page_view"}]}
    old = {"X-Segserver-Key": site["site_key"]}
    assert (await client.post("/v1/events", headers=old, json=event)).status == 202
    rotated = await client.post("/v1/admin/sites/shop/rotate-key", headers=admin_headers())
    new_key = (await rotated.json())["site_key"]
    assert new_key != site["site_key"]
    assert (await client.post("/v1/events", headers=old, json=event)).status == 401
    new = {"X-Segserver-Key": new_key}
    assert (await client.post("/v1/events", headers=new, json=event)).status == 202


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert {k: body[k] for k in ("status", "redis", "unreachable", "scripts", "stale")} == {
        "status": "ready", "redis": "ok", "unreachable": [], "scripts": True, "stale": []
    }  # fmt: skip
    assert set(body["loops"]) == {"expiry", "history", "triggers", "sweep", "quotas", "jobs"}


async def test_unknown_route_is_json_404(client: Client) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_sdk_build_is_served(client: Client) -> None:
    for name in ("segserver.js", "segserver.esm.js"):
        resp = await client.get(f"/sdk/{name}")
        assert resp.status == 200, name
        assert "javascript" in resp.headers["Content-Type"]
        assert "v1/context" in await resp.text()


async def test_a_new_site_gets_the_prebuilt_segments(client: Client) -> None:
    resp = await client.post("/v1/admin/sites", headers=admin_headers(), json={"id": "fresh"})
    assert resp.status == 201
    installed = (await resp.json())["segments"]
    assert {"everyone", "new_visitors", "cart_abandoners", "recent_buyers"} <= set(installed)
    listing = await client.get(
        "/v1/admin/sites/fresh/segments?status=active&per_page=500", headers=admin_headers()
    )
    segments = (await listing.json())["segments"]
    assert {s["id"] for s in segments} == set(installed)
    assert all(s["prebuilt"] for s in segments)
    # they are evaluated for every visitor from the first event on
    key = {"X-Segserver-Key": (await resp.json())["site_key"]}
    sent = await client.post("/v1/events", headers=key,
                             json=[{"visitor_id": "n", "type": "page_view"}])  # fmt: skip
    assert sent.status == 202
    visitor = await client.get("/v1/admin/sites/fresh/visitors/n", headers=admin_headers())
    assert visitor.status == 200
