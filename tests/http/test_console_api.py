"""The admin page's own endpoints through the real app on a real Redis: the site's
schema, sizes with sparklines, rule checking in both forms, which campaign wins for
which segment, a visitor's read-only explain and history; and /admin's files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from segserver.cli import admin_url
from segserver.config import load_settings
from segserver.http.keys import SERVICES
from segserver.http.openapi import document
from segserver.http.operations import BY_ROUTE
from segserver.wiring import Services
from tests.conftest import ADMIN_TOKEN, Clock, admin_headers, snapshot

Client = TestClient[Any, Any]
S = "/v1/admin/sites/shop"
RULES = {
    "de": {"attr": "country", "op": "eq", "value": "DE"},
    "buyers": {"attr": "orders", "op": "gte", "value": 1},
    "fans": {"attr": "points", "op": "gt", "value": 10},
}


def services_of(client: Client) -> Services:
    services: Services = client.app[SERVICES]
    return services


async def admin(client: Client, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    resp = await client.request(method, path, headers=admin_headers(), json=body)
    assert resp.status == status, await resp.text()
    return await resp.json() if resp.status != 204 else None


@pytest_asyncio.fixture
async def shop(client: Client, site: dict[str, Any]) -> dict[str, set[str]]:
    """24 visitors through the public API and 3 active segments; their members."""
    key = {"Authorization": f"Bearer {site['server_key']}"}  # purchases are trusted events
    want: dict[str, set[str]] = {sid: set() for sid in RULES}
    for i in range(24):
        vid = f"v{i}"
        country = ["DE", "FR", "AT"][i % 3]
        events: list[dict[str, Any]] = [
            {"visitor_id": vid, "type": "page_view", "properties": {"country": country}}
        ]
        if country == "DE":
            want["de"].add(vid)
        if i % 4 == 0:
            events.append({"visitor_id": vid, "type": "purchase", "properties": {"value": 5}})
            want["buyers"].add(vid)
        if i % 2 == 0:
            events.append({"visitor_id": vid, "type": "identify", "properties": {"points": i}})
            if i > 10:
                want["fans"].add(vid)
        resp = await client.post("/v1/events", headers=key, json=events)
        assert resp.status == 202, await resp.text()
    for sid, rule in RULES.items():
        await admin(
            client,
            "POST",
            f"{S}/segments",
            {"id": sid, "status": "active", "rule": rule},
            status=201,
        )
    await admin(
        client, "POST", f"{S}/segments", {"id": "draft_one", "rule": RULES["de"]}, status=201
    )
    await services_of(client).recomputer.wait()
    return want


async def test_schema_lists_attributes_operators_known_values_and_segments(
    client: Client, shop: dict[str, set[str]]
) -> None:
    body = await admin(client, "GET", f"{S}/schema")
    attrs = {a["name"]: a for a in body["attributes"]}
    assert attrs["country"]["kind"] == "category" and attrs["country"]["source"] == "built-in"
    assert set(attrs["country"]["values"]) == {"DE", "FR", "AT"}
    assert "in" in attrs["country"]["operators"] and "gt" not in attrs["country"]["operators"]
    assert attrs["identified"]["operators"] == ["eq", "ne", "exists", "missing"]
    assert "within" in attrs["last_seen"]["operators"]
    assert attrs["page_views"]["window"] is True and attrs["orders"]["window"] is True
    assert (attrs["points"]["source"], attrs["points"]["kind"]) == ("custom", "number")
    assert attrs["wishlist_add_count"]["source"] == "event"
    assert attrs["wishlist_add_count"]["window"] is True
    assert attrs["wishlist_add_at"]["kind"] == "timestamp"
    assert "values" not in attrs["points"]
    assert [s["id"] for s in body["segments"]] == ["buyers", "de", "draft_one", "fans"]
    assert body["window_days"] == 35


async def test_sizes_give_each_segment_its_size_and_a_thinned_history(
    client: Client, shop: dict[str, set[str]], clock: Clock
) -> None:
    history = services_of(client).history
    assert history is not None
    start = clock.now
    for step in range(6):  # six snapshots, one per interval
        assert await history.run_once(start - (6 - step) * 300) == 1
    body = await admin(client, "GET", f"{S}/sizes?points=4&since={start - 3600}")
    sizes = body["sizes"]
    for sid, members in shop.items():
        series = sizes[sid]["history"]
        assert sizes[sid]["size"] == len(members)
        assert len(series) == 4
        assert series[-1] == [start, len(members)]  # the last point is the size now
        assert series[0][0] == start - 6 * 300  # thinned evenly: the oldest point stays
    assert sizes["draft_one"] == {"size": None, "history": []}  # a draft has no members
    bad = await client.get(f"{S}/sizes?points=1", headers=admin_headers())
    assert bad.status == 400 and (await bad.json())["error"]["message"].startswith("points")


async def test_rules_check_converts_both_forms_and_names_the_path(
    client: Client, shop: dict[str, set[str]], settings: Any
) -> None:
    rule = {
        "all": [
            {"attr": "country", "op": "in", "value": ["DE", "AT"]},
            {
                "any": [
                    {"segment": "buyers"},
                    {"attr": "page_views", "window": "7d", "op": "gte", "value": 3},
                ]
            },
        ]
    }
    before = snapshot(settings.redis_url, settings.key_prefix)
    out = await admin(client, "POST", f"{S}/rules/check", {"rule": rule})
    assert out["text"] == ('country in ["DE", "AT"] and (segment buyers or page_views[7d] >= 3)')
    back = await admin(client, "POST", f"{S}/rules/check", {"text": out["text"]})
    assert back["rule"] == rule and back["text"] == out["text"]

    async def error(body: Any, status: int = 422) -> str:
        resp = await client.post(f"{S}/rules/check", headers=admin_headers(), json=body)
        assert resp.status == status, await resp.text()
        message: str = (await resp.json())["error"]["message"]
        return message

    wrong = {"all": [rule["all"][0], {"attr": "orders", "op": "gt", "value": "many"}]}
    assert (await error({"rule": wrong})).startswith("rule.all[1].value:")
    assert (await error({"text": "orders >"})).startswith("text[8]:")
    assert (await error({"text": "shoe_size > 3"})).startswith("rule.attr:")
    assert "itself" in await error({"rule": {"segment": "de"}, "segment": "de"})
    assert (await error({"rule": {"segment": "ghost"}})).startswith("rule.segment:")
    assert (await error({"rule": rule, "text": "x"}, 400)).startswith("rule:")
    assert (await error({"rule": rule, "extra": 1}, 400)).startswith("extra:")
    assert snapshot(settings.redis_url, settings.key_prefix) == before  # checking writes nothing


async def test_winners_count_eligible_wins_and_who_took_the_rest(
    client: Client, shop: dict[str, set[str]], settings: Any
) -> None:
    await admin(client, "POST", f"{S}/placements", {"id": "hero", "kind": "banner"}, status=201)
    await admin(
        client,
        "POST",
        f"{S}/content",
        {"id": "c1", "kind": "banner", "payload": {"title": "Hi"}},
        status=201,
    )

    def campaign(cid: str, priority: int, include: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "id": cid,
            "placement": "hero",
            "status": "active",
            "priority": priority,
            "audience": {"include": include, "match": "any", **extra},
            "variants": [{"id": "a", "content": "c1", "weight": 1}],
        }

    await admin(client, "POST", f"{S}/campaigns", campaign("top", 50, ["buyers"]), status=201)
    await admin(
        client,
        "POST",
        f"{S}/campaigns",
        campaign("mid", 20, ["de", "fans"], exclude=["buyers"]),
        status=201,
    )
    await admin(client, "POST", f"{S}/campaigns", campaign("low", 10, ["de"]), status=201)
    await admin(client, "POST", f"{S}/campaigns", campaign("drafty", 5, ["draft_one"]), status=201)
    before = snapshot(settings.redis_url, settings.key_prefix)
    out = (await admin(client, "GET", f"{S}/winners"))["placements"]["hero"]
    assert snapshot(settings.redis_url, settings.key_prefix) == before  # no result keys left

    buyers, de, fans = shop["buyers"], shop["de"], shop["fans"]
    mid = (de | fans) - buyers
    low = de
    by_id = {c["id"]: c for c in out["campaigns"]}
    assert [c["id"] for c in out["campaigns"]] == ["top", "mid", "low", "drafty"]
    assert (by_id["top"]["eligible"], by_id["top"]["wins"]) == (len(buyers), len(buyers))
    assert (by_id["mid"]["eligible"], by_id["mid"]["wins"]) == (len(mid), len(mid))
    assert by_id["low"]["eligible"] == len(low)
    assert by_id["low"]["wins"] == len(low - buyers - mid) == 0
    assert by_id["low"]["lost_to"] == {"top": len(low & buyers), "mid": len(low & mid)}
    assert by_id["drafty"]["countable"] is False and "draft" in by_id["drafty"]["why"]
    segments = {s["id"]: s for s in out["segments"]}
    assert set(segments) == {"buyers", "de", "fans"}
    for sid, seg in segments.items():
        assert seg["size"] == len(shop[sid])
        assert sum(seg["winners"].values()) == seg["size"]  # every member gets one answer
    assert segments["fans"]["winners"] == {
        "top": len(fans & buyers),
        "mid": len(fans - buyers),
        "low": 0,
        "(default)": 0,
    }


async def test_visitor_explain_decides_like_a_page_view_and_writes_nothing(
    client: Client, shop: dict[str, set[str]], site: dict[str, Any], settings: Any
) -> None:
    await admin(client, "POST", f"{S}/placements", {"id": "hero", "kind": "banner"}, status=201)
    await admin(
        client,
        "POST",
        f"{S}/content",
        {"id": "c1", "kind": "banner", "payload": {"title": "Hi"}},
        status=201,
    )
    await admin(
        client,
        "POST",
        f"{S}/campaigns",
        {
            "id": "de_banner",
            "placement": "hero",
            "status": "active",
            "priority": 5,
            "audience": {"include": ["de"]},
            "variants": [{"id": "a", "content": "c1"}],
        },
        status=201,
    )
    await admin(
        client,
        "POST",
        f"{S}/campaigns",
        {
            "id": "buyer_banner",
            "placement": "hero",
            "status": "active",
            "priority": 9,
            "audience": {"include": ["buyers"]},
            "variants": [{"id": "a", "content": "c1"}],
        },
        status=201,
    )
    vid = "v3"  # DE, no purchase: the buyer banner loses, the DE banner wins
    before = snapshot(settings.redis_url, settings.key_prefix)
    out = await admin(client, "GET", f"{S}/visitors/{vid}/explain")
    assert snapshot(settings.redis_url, settings.key_prefix) == before
    assert out["decisions"]["hero"] == {"campaign": "de_banner", "variant": "a", "content": "c1"}
    assert out["placements"]["hero"] == [
        {"campaign": "buyer_banner", "won": False, "reason": "audience not matched"},
        {"campaign": "de_banner", "won": True, "reason": "won"},
    ]
    rules = {r["segment"]: r for r in out["rules"]}
    assert rules["de"]["matched"] is True
    assert rules["de"]["decided_by"]["actual"] == "DE"  # the string, not its dictionary code
    assert rules["buyers"]["matched"] is False and set(out["segments"]) == {"de"}
    page = await client.post(
        "/v1/context",
        headers={"X-Segserver-Key": site["site_key"]},
        json={"visitor_id": vid, "placements": ["hero"]},
    )
    served = (await page.json())["decisions"]["hero"]
    assert (served["campaign"], served["variant"]) == ("de_banner", "a")
    only = await admin(client, "GET", f"{S}/visitors/{vid}/explain?placements=nope")
    assert only["decisions"] == {"nope": None}
    missing = await client.get(f"{S}/visitors/ghost/explain", headers=admin_headers())
    assert missing.status == 404
    bad = await client.get(f"{S}/visitors/{'x' * 300}/explain", headers=admin_headers())
    assert bad.status == 400


async def test_visitor_history_lists_entries_and_stored_membership(
    client: Client, shop: dict[str, set[str]]
) -> None:
    out = await admin(client, "GET", f"{S}/visitors/v4/history")  # FR, bought, no points > 10
    assert out["stored"] == ["buyers"]
    assert [(c["change"], c["segment"]) for c in out["changes"]] == [("entered", "buyers")]
    assert out["changes"][0]["cause"] in ("recompute", "event", "edit")
    missing = await client.get(f"{S}/visitors/ghost/history", headers=admin_headers())
    assert missing.status == 404


@pytest.mark.parametrize(
    "path",
    [
        f"{S}/schema",
        f"{S}/sizes",
        f"{S}/winners",
        f"{S}/visitors/v1/explain",
        f"{S}/visitors/v1/history",
    ],
)
async def test_console_endpoints_need_the_admin_token(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "missing_admin_token"


async def test_the_page_is_served_at_admin(client: Client) -> None:
    root = await client.get("/admin", allow_redirects=False)
    assert (root.status, root.headers["Location"]) == (302, "/admin/")
    index = await client.get("/admin/")
    text = await index.text()
    assert index.status == 200 and index.content_type == "text/html"
    assert '<script type="module" src="/admin/js/app.js">' in text
    js = await client.get("/admin/js/api.js")
    assert js.status == 200 and js.content_type in ("text/javascript", "application/javascript")
    assert js.headers["Cache-Control"] == "no-cache"
    for bad in (
        "/admin/js/nope.js",
        "/admin/../pyproject.toml",
        "/admin/%2e%2e/cli.py",
        "/admin/js/../../http/app.py",
        "/admin/app.py",
    ):
        resp = await client.get(bad)
        assert resp.status == 404, bad


def test_serve_prints_the_admin_url_with_the_token_in_its_fragment() -> None:
    local = load_settings(host="0.0.0.0", port=8080, admin_token=ADMIN_TOKEN)
    assert admin_url(local, True) == f"http://127.0.0.1:8080/admin/#token={ADMIN_TOKEN}"
    assert admin_url(local, False) == "http://127.0.0.1:8080/admin/"
    v6 = load_settings(host="::1", port=9000, admin_token=ADMIN_TOKEN)
    assert admin_url(v6, False) == "http://[::1]:9000/admin/"


API_JS = Path(__file__).resolve().parents[2] / "segserver" / "admin" / "js" / "api.js"


def page_routes() -> dict[str, tuple[str, str]]:
    """The page's ROUTES table (segserver/admin/js/api.js): name → (method, path)."""
    text = API_JS.read_text()
    table = text[text.index("export const ROUTES = {") : text.index("};")]
    found = re.findall(r'^\s+(\w+): \["(GET|POST|PUT|PATCH|DELETE)", "([^"]+)"\],$', table, re.M)
    assert len(found) == table.count("["), "a ROUTES line the test cannot read"
    return {name: (method, path) for name, method, path in found}


def test_every_request_of_the_page_is_an_operation_of_the_spec() -> None:
    """api.js is the page's only door to the server (the e2e tests check the requests
    the browser actually sends against the same spec)."""
    routes = page_routes()
    assert len(routes) >= 50
    paths = document()["paths"]
    for name, (method, path) in routes.items():
        assert method.lower() in paths.get(path, {}), f"{name}: {method} {path} is not in the spec"
    # what the page hides from a role is what the spec says that role may not do
    roles = {name: BY_ROUTE[route].access for name, route in routes.items()}
    posted_reads = {"checkRule", "preview", "query", "overlap"}
    reads = {n for n, (m, _) in routes.items() if m == "GET" and n != "tokens"} | posted_reads
    assert {n for n, r in roles.items() if r.label == "viewer"} == reads
    assert {n for n, r in roles.items() if r.label == "admin"} == {
        "rotateKey",
        "rotateServerKey",
        "tokens",
        "createToken",
        "revokeToken",
        "eraseVisitor",
    }
