"""Segments through the admin API: create, validate (422 with the JSON path), list,
versions and stale updates, archive, delete; recompute jobs after edits."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from segserver.wiring import Services
from tests.conftest import admin_headers, server_headers

Client = TestClient[Any, Any]
BASE = "/v1/admin/sites/shop/segments"


async def create(client: Client, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    resp = await client.post(BASE, headers=admin_headers(), json=body)
    assert resp.status == status, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_create_read_and_list(client: Client, site: dict[str, Any]) -> None:
    await create(client, {"id": "big", "name": "Big spenders", "description": "Spent a LOT",
                          "tags": ["money"], "status": "active", "priority": 5,
                          "rule": {"attr": "total_spent", "op": "gt", "value": 1000}})  # fmt: skip
    await create(client, {"id": "de", "name": "Germany",
                          "rule": {"attr": "country", "op": "eq", "value": "DE"}})  # fmt: skip
    got = await client.get(f"{BASE}/big", headers=admin_headers())
    assert (await got.json())["rule"] == {"attr": "total_spent", "op": "gt", "value": 1000}

    async def ids(query: str) -> list[str]:
        resp = await client.get(f"{BASE}?{query}", headers=admin_headers())
        assert resp.status == 200, await resp.text()
        return [s["id"] for s in (await resp.json())["segments"]]

    assert await ids("q=a%20lot") == ["big"]  # case-insensitive, description too
    assert await ids("q=GERM") == ["de"]
    assert await ids("status=draft") == ["de"]
    assert await ids("tag=money") == ["big"]
    assert await ids("sort=-priority") == ["big", "de"]
    assert await ids("sort=id&per_page=1&page=2") == ["de"]
    bad = await client.get(f"{BASE}?sort=colour", headers=admin_headers())
    assert bad.status == 400


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"attr": "shoe_size", "op": "gt", "value": 1}, "rule.attr"),
        ({"all": [{"attr": "orders", "op": "gt", "value": "many"}]}, "rule.all[0].value"),
        ({"attr": "last_seen", "op": "within", "value": "30x"}, "rule.value"),
        ({"segment": "nope"}, "rule.segment"),
        ({"all": []}, "rule.all"),
    ],
)
async def test_rule_errors_are_422_with_the_path(
    client: Client, site: dict[str, Any], rule: dict[str, Any], path: str
) -> None:
    resp = await client.post(BASE, headers=admin_headers(), json={"id": "x", "rule": rule})
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_rule"
    assert err["message"].startswith(path), err
    assert (await client.get(f"{BASE}/x", headers=admin_headers())).status == 404


async def test_reference_cycles_are_rejected(client: Client, site: dict[str, Any]) -> None:
    await create(client, {"id": "a", "status": "active",
                          "rule": {"attr": "orders", "op": "gt", "value": 0}})  # fmt: skip
    await create(client, {"id": "b", "status": "active", "rule": {"segment": "a"}})
    resp = await client.put(f"{BASE}/a", headers=admin_headers(),
                            json={"version": 1, "rule": {"segment": "b"}})  # fmt: skip
    assert resp.status == 422
    assert "cycle" in (await resp.json())["error"]["message"]
    # a referenced active segment cannot be archived or deleted
    arch = await client.put(f"{BASE}/a", headers=admin_headers(),
                            json={"version": 1, "status": "archived"})  # fmt: skip
    assert arch.status == 409
    assert (await client.delete(f"{BASE}/a", headers=admin_headers())).status == 409


async def test_versions_stale_updates_and_rollback(client: Client, site: dict[str, Any]) -> None:
    await create(client, {"id": "v", "rule": {"attr": "orders", "op": "gte", "value": 1}})
    ok = await client.put(
        f"{BASE}/v",
        headers=admin_headers(),
        json={"version": 1, "rule": {"attr": "orders", "op": "gte", "value": 2}},
    )
    assert ok.status == 200
    assert (await ok.json())["version"] == 2
    stale = await client.put(f"{BASE}/v", headers=admin_headers(),
                             json={"version": 1, "name": "lost update"})  # fmt: skip
    assert stale.status == 409
    assert (await stale.json())["error"]["code"] == "stale_version"
    missing = await client.put(f"{BASE}/v", headers=admin_headers(), json={"name": "x"})
    assert missing.status == 400
    versions = await (await client.get(f"{BASE}/v/versions", headers=admin_headers())).json()
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    back = await client.post(f"{BASE}/v/rollback", headers=admin_headers(),
                             json={"to": 1, "version": 2})  # fmt: skip
    assert back.status == 200, await back.text()
    body = await back.json()
    assert (body["version"], body["rule"]["value"]) == (3, 1)
    gone = await client.delete(f"{BASE}/v", headers=admin_headers())
    assert gone.status == 204
    assert (await client.get(f"{BASE}/v", headers=admin_headers())).status == 404


async def test_recompute_after_an_edit_equals_one_by_one(
    client: Client, site: dict[str, Any], services: Services
) -> None:
    key = server_headers(site)
    for i in range(60):
        events = [{"visitor_id": f"v{i}", "type": "page_view",
                   "properties": {"country": ["DE", "FR", "AT"][i % 3]}}]  # fmt: skip
        if i % 4 == 0:
            events.append({"visitor_id": f"v{i}", "type": "purchase",
                           "properties": {"value": 10 * i}})  # fmt: skip
        assert (await client.post("/v1/events", headers=key, json=events)).status == 202
    made = await create(client, {"id": "rich_dach", "status": "active", "rule": {"all": [
        {"attr": "country", "op": "in", "value": ["DE", "AT"]},
        {"attr": "total_spent", "op": "gte", "value": 200}]}})  # fmt: skip
    assert "recompute_job" in made
    await services.recomputer.wait()  # the app's job ran in this process' loop
    app_services = client.app[__import__("segserver.http.keys").http.keys.SERVICES]
    await app_services.recomputer.wait()
    job = await client.get(f"/v1/admin/sites/shop/jobs/{made['recompute_job']}",
                           headers=admin_headers())  # fmt: skip
    job_body = await job.json()
    assert (job_body["state"], job_body["percent"], job_body["done"]) == ("done", 100.0, 60)

    ctx = await app_services.runtime.get("shop")
    slot = ctx.segments["rich_dach"].slot
    expected = set()
    for i in range(60):
        if i % 3 != 1 and i % 4 == 0 and 10 * i >= 200:
            expected.add(f"v{i}")
    found = set()
    for i in range(60):
        vid = f"v{i}"
        stored = await app_services.membership.read("shop", vid)
        if slot in set(stored.slots().tolist()):
            found.add(vid)
    assert found == expected
    # and the shard bitmaps count exactly those members
    total = 0
    for shard in range(app_services.keys.shards):
        total += await app_services.clients.raw.bitcount(
            app_services.keys.segment_bitmap("shop", shard, slot))  # fmt: skip
    assert total == len(expected)


async def test_the_text_form_is_accepted_in_place_of_the_json_rule(
    client: Client, site: dict[str, Any], services: Services
) -> None:
    text = 'total_spent > 1000 and country in ["DE", "AT"]'
    made = await create(client, {"id": "rich_dach", "rule_text": text})
    assert made["rule"] == {
        "all": [
            {"attr": "total_spent", "op": "gt", "value": 1000},
            {"attr": "country", "op": "in", "value": ["DE", "AT"]},
        ]
    }
    changed = await client.put(
        f"{BASE}/rich_dach",
        headers=admin_headers(),
        json={"version": made["version"], "rule_text": "orders >= 2"},
    )
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["rule"] == {"attr": "orders", "op": "gte", "value": 2}

    before = await services.clients.raw.dbsize()
    bad = await create(client, {"id": "broken", "rule_text": "orders >= "}, status=422)
    assert bad["error"]["code"] == "invalid_rule"
    assert bad["error"]["message"].startswith("rule_text[")  # the character named
    unknown = await create(client, {"id": "broken", "rule_text": "shoe_size > 1"}, status=422)
    assert unknown["error"]["message"].startswith("rule.attr")  # compiled like JSON rules
    both = await create(
        client,
        {
            "id": "broken",
            "rule_text": "orders >= 2",
            "rule": {"attr": "orders", "op": "gte", "value": 2},
        },
        status=400,
    )
    assert "rule_text" in both["error"]["message"]
    assert await services.clients.raw.dbsize() == before  # nothing stored
