"""Segment analytics through the real app: stats, CSV export (streamed), preview,
set-expression queries (saved as static segments), overlap, static member upload and
freeze; bad input is a 4xx naming the field and changes nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from segserver.config import Settings
from segserver.http import analytics_routes, create_app
from segserver.http.keys import SERVICES
from segserver.wiring import Services
from tests.conftest import Clock, admin_headers, server_headers, snapshot

Client = TestClient[Any, Any]
BASE = "/v1/admin/sites/shop/segments"
SEGMENTS = {
    "de": {"attr": "country", "op": "eq", "value": "DE"},
    "buyers": {"attr": "orders", "op": "gte", "value": 1},
    "points": {"attr": "points", "op": "gt", "value": 10},
}


def mount(app: web.Application) -> None:
    """The analytics routes, unless http/app.py mounts them already."""
    paths = {r.canonical for r in app.router.resources()}
    if f"{analytics_routes.BASE}/preview" not in paths:
        app.add_routes(analytics_routes.routes)


@pytest_asyncio.fixture
async def client(settings: Settings, clock: Clock) -> AsyncIterator[Client]:
    app = create_app(settings, clock=clock)
    mount(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def app_services(client: Client) -> Services:
    return client.app[SERVICES]


@pytest_asyncio.fixture
async def shop(client: Client, site: dict[str, Any]) -> dict[str, set[str]]:
    """30 visitors through the public API, 3 active segments; their expected members."""
    key = server_headers(site)
    want: dict[str, set[str]] = {sid: set() for sid in SEGMENTS}
    for i in range(30):
        vid = f"v{i}"
        country = ["DE", "FR", "AT"][i % 3]
        events: list[dict[str, Any]] = [
            {"visitor_id": vid, "type": "page_view", "properties": {"country": country}}
        ]
        if i % 3 == 0:
            want["de"].add(vid)
        if i % 4 == 0:
            events.append({"visitor_id": vid, "type": "purchase", "properties": {"value": 5}})
            want["buyers"].add(vid)
        if i % 5 == 0:
            events.append({"visitor_id": vid, "type": "identify", "properties": {"points": i}})
            if i > 10:
                want["points"].add(vid)
        resp = await client.post("/v1/events", headers=key, json=events)
        assert resp.status == 202, await resp.text()
    for sid, rule in SEGMENTS.items():
        resp = await client.post(BASE, headers=admin_headers(),
                                 json={"id": sid, "status": "active", "rule": rule})  # fmt: skip
        assert resp.status == 201, await resp.text()
    await app_services(client).recomputer.wait()
    return want


async def post(client: Client, path: str, body: Any, status: int = 200) -> dict[str, Any]:
    resp = await client.post(f"{BASE}{path}", headers=admin_headers(), json=body)
    assert resp.status == status, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_stats_size_and_history(client: Client, shop: dict[str, set[str]]) -> None:
    for sid, members in shop.items():
        resp = await client.get(f"{BASE}/{sid}/stats", headers=admin_headers())
        body = await resp.json()
        assert (body["id"], body["size"]) == (sid, len(members))
        assert isinstance(body["history"], list)
    missing = await client.get(f"{BASE}/nope/stats", headers=admin_headers())
    assert missing.status == 404
    assert (await missing.json())["error"]["message"].startswith("segment:")


async def test_export_csv_streams_members_and_attributes(
    client: Client, shop: dict[str, set[str]]
) -> None:
    resp = await client.get(f"{BASE}/de/members.csv?attrs=country,points,last_seen",
                            headers=admin_headers())  # fmt: skip
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in resp.headers
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0] == ["visitor_id", "country", "points", "last_seen"]
    assert {r[0] for r in rows[1:]} == shop["de"] and len(rows) == len(shop["de"]) + 1
    by_id = {r[0]: r for r in rows[1:]}
    assert by_id["v15"][1:3] == ["DE", "15"]
    assert by_id["v3"][2] == ""  # no value: an empty cell
    assert by_id["v3"][3].endswith("Z")  # timestamps as ISO 8601 UTC
    bad = await client.get(f"{BASE}/de/members.csv?attrs=country,shoe_size",
                           headers=admin_headers())  # fmt: skip
    assert bad.status == 400
    assert (await bad.json())["error"]["message"].startswith("attrs[1]")


async def test_preview_counts_a_draft_rule(client: Client, shop: dict[str, set[str]]) -> None:
    rule = {"all": [{"segment": "de"}, {"attr": "orders", "op": "gte", "value": 1}]}
    body = await post(client, "/preview", {"rule": rule})
    want = shop["de"] & shop["buyers"]
    assert (body["exact"], body["method"], body["count"]) == (True, "exact", len(want))
    assert set(body["sample"]) == want  # fewer than 20: every member
    est = await post(client, "/preview", {"rule": rule, "sample_size": 100, "seed": 3})
    assert est["exact"] is True  # 30 visitors ≤ 100: exact
    unknown_attr = {"rule": {"attr": "shoe_size", "op": "gt", "value": 1}}
    bad = await client.post(f"{BASE}/preview", headers=admin_headers(), json=unknown_attr)
    assert bad.status == 422
    assert (await bad.json())["error"]["message"].startswith("rule.attr")
    small = await client.post(f"{BASE}/preview", headers=admin_headers(),
                              json={"rule": rule, "sample_size": 5})  # fmt: skip
    assert small.status == 400
    assert (await small.json())["error"]["message"].startswith("sample_size")


async def test_query_and_save_as_static(
    client: Client, shop: dict[str, set[str]], settings: Settings
) -> None:
    expr = {"and": [{"or": ["de", "points"]}, {"not": "buyers"}]}
    want = (shop["de"] | shop["points"]) - shop["buyers"]
    body = await post(client, "/query", {"expression": expr})
    assert body["count"] == len(want) and set(body["sample"]) == want
    save_as = {"id": "de-or-points", "name": "Saved"}
    saved = await post(client, "/query", {"expression": expr, "save_as": save_as})
    assert saved["saved"]["type"] == "static" and saved["count"] == len(want)
    stats = await (await client.get(f"{BASE}/de-or-points/stats", headers=admin_headers())).json()
    assert stats["size"] == len(want)
    export = await client.get(f"{BASE}/de-or-points/members.csv", headers=admin_headers())
    assert {r[0] for r in csv.reader(io.StringIO(await export.text()))} - {"visitor_id"} == want

    before = snapshot(settings.redis_url, settings.key_prefix)
    for bad, status, prefix in [
        ({"expression": {"and": ["de", "nope"]}, "save_as": {"id": "x"}}, 404,
         "expression.and[1]"),
        ({"expression": {"xor": ["de"]}}, 400, "expression"),
        ({"expression": {"not": "de"}, "save_as": {"id": "y"}}, 400, "expression.not"),
        ({"expression": "de", "save_as": {"id": "de-or-points"}}, 409, "save_as.id"),
        ({"expression": "de", "save_as": {"id": "Bad Id"}}, 400, "save_as.id"),
        ({"expresion": "de"}, 400, "expression"),
    ]:  # fmt: skip
        resp = await client.post(f"{BASE}/query", headers=admin_headers(), json=bad)
        assert resp.status == status, (bad, await resp.text())
        assert (await resp.json())["error"]["message"].startswith(prefix), bad
    assert snapshot(settings.redis_url, settings.key_prefix) == before


async def test_overlap_matrix(
    client: Client, shop: dict[str, set[str]], settings: Settings
) -> None:
    ids = ["de", "buyers", "points"]
    body = await post(client, "/overlap", {"ids": ids})
    assert body["matrix"] == [[len(shop[a] & shop[b]) for b in ids] for a in ids]
    before = snapshot(settings.redis_url, settings.key_prefix)
    for bad, status, prefix in [
        ({"ids": ["de"] * 51}, 400, "ids"),
        ({"ids": ["de", "nope"]}, 404, "ids[1]"),
        ({"ids": []}, 400, "ids"),
        ({"ids": "de"}, 400, "ids"),
    ]:
        resp = await client.post(f"{BASE}/overlap", headers=admin_headers(), json=bad)
        assert resp.status == status, await resp.text()
        assert (await resp.json())["error"]["message"].startswith(prefix)
    assert snapshot(settings.redis_url, settings.key_prefix) == before


async def test_static_upload_json_and_csv(
    client: Client, shop: dict[str, set[str]], settings: Settings
) -> None:
    made = await client.post(BASE, headers=admin_headers(),
                             json={"id": "vips", "type": "static", "status": "active"})  # fmt: skip
    assert made.status == 201, await made.text()
    body = await post(client, "/vips/members", {"visitor_ids": ["v1", "v2", "ghost"]})
    assert (body["added"], body["unknown"], body["size"]) == (2, ["ghost"], 2)
    resp = await client.post(f"{BASE}/vips/members?mode=add", data="visitor_id\nv3\nv4\n",
                             headers={**admin_headers(), "Content-Type": "text/csv"})  # fmt: skip
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["size"] == 4
    body = await post(client, "/vips/members", ["v9"])  # a bare list replaces
    assert body["size"] == 1

    before = snapshot(settings.redis_url, settings.key_prefix)
    for path, bad, status, prefix in [
        ("/vips/members", {"visitor_ids": ["v1", "bad id"]}, 400, "visitor_ids[1]"),
        ("/vips/members", {"visitor_ids": ["v1"], "mode": "merge"}, 400, "mode"),
        ("/vips/members", {"ids": ["v1"]}, 400, "visitor_ids"),
        ("/de/members", {"visitor_ids": ["v1"]}, 409, "segment"),
        ("/nope/members", {"visitor_ids": ["v1"]}, 404, "segment"),
    ]:
        resp = await client.post(f"{BASE}{path}", headers=admin_headers(), json=bad)
        assert resp.status == status, await resp.text()
        assert (await resp.json())["error"]["message"].startswith(prefix)
    assert snapshot(settings.redis_url, settings.key_prefix) == before


async def test_freeze_makes_a_static_copy(
    client: Client, shop: dict[str, set[str]], settings: Settings, clock: Clock
) -> None:
    body = await post(client, "/buyers/freeze", {"id": "buyers-then", "name": "Buyers then"},
                      status=201)  # fmt: skip
    assert (body["type"], body["frozen_from"], body["size"]) == ("static", "buyers",
                                                                len(shop["buyers"]))  # fmt: skip
    assert body["frozen_at"] == clock.now
    before = snapshot(settings.redis_url, settings.key_prefix)
    for path, bad, status in [("/buyers/freeze", {"id": "buyers-then"}, 409),
                              ("/nope/freeze", {"id": "z"}, 404),
                              ("/buyers/freeze", {"name": "no id"}, 400)]:  # fmt: skip
        resp = await client.post(f"{BASE}{path}", headers=admin_headers(), json=bad)
        assert resp.status == status, await resp.text()
    assert snapshot(settings.redis_url, settings.key_prefix) == before


@pytest.mark.parametrize("path", ["/preview", "/query", "/overlap"])
async def test_admin_token_required(client: Client, site: dict[str, Any], path: str) -> None:
    resp = await client.post(f"{BASE}{path}", json={})
    assert resp.status == 401
