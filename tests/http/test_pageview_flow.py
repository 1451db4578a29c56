"""The page view's budget, measured on the real app with its own counters: one
evaluation per visitor and request, two Redis round trips per page view, and the
after-events step shared by POST /v1/context and POST /v1/events (same writes)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from segserver.config import Settings
from segserver.http import create_app
from segserver.http.keys import SERVICES
from segserver.profile.identity import shard_of
from tests.conftest import Clock, admin_headers

Client = TestClient[Any, Any]
BASE = "/v1/admin/sites/quiet"


@pytest_asyncio.fixture
async def quiet(settings: Settings, clock: Clock) -> AsyncIterator[Client]:
    """The app with no background loop and a long catalogue cache: every Redis round
    trip it makes is one a request made."""
    calm = settings.model_copy(update={
        "expiry_interval_seconds": 0, "history_interval_seconds": 0, "trigger_poll_seconds": 0,
        "jobs_poll_seconds": 0, "catalogue_cache_seconds": 3600,
        "quota_sync_seconds": 0, "expired_sweep_per_second": 0,
    })  # fmt: skip
    async with TestClient(TestServer(create_app(calm, clock=clock))) as client:
        yield client


async def metric(client: Client, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(rf"^{name} ([\d.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def setup_site(client: Client) -> tuple[dict[str, str], dict[str, str]]:
    """The site; its public key's header and its server key's header."""
    admin = admin_headers()
    made = await client.post(
        "/v1/admin/sites", headers=admin, json={"id": "quiet", "prebuilt": False}
    )
    assert made.status == 201
    for sid, rule in (("viewers", {"attr": "product_views", "op": "gte", "value": 1}),
                      ("buyers", {"attr": "orders", "op": "gte", "value": 1})):  # fmt: skip
        body = {"id": sid, "status": "active", "rule": rule}
        assert (await client.post(f"{BASE}/segments", headers=admin, json=body)).status == 201
    for path, body in (
        ("placements", {"id": "hero", "kind": "banner"}),
        ("content", {"id": "c", "kind": "banner", "payload": {"title": "T"}}),
        ("campaigns", {"id": "camp", "placement": "hero", "status": "active",
                       "variants": [{"id": "a", "content": "c"}], "goals": ["purchase"],
                       "caps": [{"per": "day", "max": 100}]}),
    ):  # fmt: skip
        assert (await client.post(f"{BASE}/{path}", headers=admin, json=body)).status == 201
    await client.app[SERVICES].recomputer.wait()  # the new segments' jobs make round trips too
    site = await made.json()
    return {"X-Segserver-Key": site["site_key"]}, {"Authorization": f"Bearer {site['server_key']}"}


async def test_a_page_view_evaluates_once_in_two_round_trips(quiet: Client) -> None:
    key, _trusted = await setup_site(quiet)
    body = {"visitor_id": "ann", "placements": ["hero"], "events": [{"type": "page_view"}]}
    first = await quiet.post("/v1/context", headers=key, json=body)  # caches the catalogue
    assert first.status == 200
    for events in ([{"type": "page_view"}], [], [{"type": "page_view"}, {"type": "page_view"}]):
        evaluations = await metric(quiet, "segserver_evaluation_seconds_count")
        trips = await metric(quiet, "segserver_redis_round_trips_total")
        resp = await quiet.post("/v1/context", headers=key, json={**body, "events": events})
        answer = await resp.json()
        assert answer["degraded"] is False
        assert answer["decisions"]["hero"]["campaign"] == "camp"
        assert await metric(quiet, "segserver_evaluation_seconds_count") == evaluations + 1
        assert await metric(quiet, "segserver_redis_round_trips_total") == trips + 2, events


async def test_events_evaluate_each_visitor_once_in_two_round_trips(quiet: Client) -> None:
    key, _trusted = await setup_site(quiet)
    batch = [{"visitor_id": v, "type": "page_view"} for v in ("a", "b", "c", "a")]
    assert (await quiet.post("/v1/events", headers=key, json=batch)).status == 202
    evaluations = await metric(quiet, "segserver_evaluation_seconds_count")
    trips = await metric(quiet, "segserver_redis_round_trips_total")
    assert (await quiet.post("/v1/events", headers=key, json=batch)).status == 202
    assert await metric(quiet, "segserver_evaluation_seconds_count") == evaluations + 3
    assert await metric(quiet, "segserver_redis_round_trips_total") == trips + 3 * 2


async def visitor_state(raw: aioredis.Redis, settings: Settings, vid: str) -> dict[str, Any]:
    """Everything the after-events step writes about one visitor, by what it means."""
    p, shard = settings.key_prefix, shard_of(vid, settings.shards)
    base = f"{p}:{{quiet.{shard}}}"
    stream = [
        {k.decode(): v.decode() for k, v in fields.items() if k != b"t"}
        for _, fields in await raw.xrange(f"{base}:changes")
        if fields[b"v"] == vid.encode()
    ]
    return {
        "bits": await raw.get(f"{base}:mb:{vid}"),
        "changes": sorted((c["s"], c["c"], c["why"]) for c in stream),
        "recent": await raw.lrange(f"{base}:rv:{vid}", 0, -1),
        "arms": await raw.hgetall(f"{base}:arms:{vid}"),
        "due": await raw.zscore(f"{base}:due", vid) is not None,
    }


async def test_page_view_and_events_share_the_after_events_step(
    quiet: Client, raw_redis: aioredis.Redis, settings: Settings, clock: Clock
) -> None:
    """The same events through either endpoint leave the same state: membership and
    its changes, recently viewed products, goal conversions (the visitor was exposed
    first), due instant."""
    key, trusted = await setup_site(quiet)
    for vid in ("via-context", "via-events"):  # exposed to the campaign first
        await quiet.post("/v1/context", headers=key, json={"visitor_id": vid,
                                                          "placements": ["hero"]})  # fmt: skip
    clock.advance(60)
    events = [{"type": "product_view", "properties": {"product_id": "p1"}},
              {"type": "product_view", "properties": {"product_id": "p2"}}]  # fmt: skip
    # a purchase is a trusted event: the shop's back end sends it with the server key
    server = [{"type": "purchase", "properties": {"value": 30, "items": ["p2"]}}]
    resp = await quiet.post("/v1/context", headers=key,
                            json={"visitor_id": "via-context", "events": events})  # fmt: skip
    assert (await resp.json())["segments"] == ["viewers"]
    resp = await quiet.post("/v1/events", headers=key,
                            json=[{**e, "visitor_id": "via-events"} for e in events])  # fmt: skip
    assert resp.status == 202
    clock.advance(60)
    resp = await quiet.post("/v1/context", headers=trusted, json={"visitor_id": "via-context",
                                                                  "events": server})  # fmt: skip
    assert (await resp.json())["events"] == [{"index": 0, "status": "stored"}]
    resp = await quiet.post("/v1/events", headers=trusted,
                            json=[{**e, "visitor_id": "via-events"} for e in server])  # fmt: skip
    assert (await resp.json())["results"] == [{"index": 0, "status": "stored"}]
    a = await visitor_state(raw_redis, settings, "via-context")
    b = await visitor_state(raw_redis, settings, "via-events")
    assert a == b
    assert a["changes"] == [("buyers", "entered", "event"), ("viewers", "entered", "event")]
    assert a["recent"] == [b"p2", b"p1"]
    assert a["arms"][b"camp|c"] == b"1"  # the purchase converted, once
    results = await (await quiet.get(f"{BASE}/campaigns/camp/results",
                                     headers=admin_headers())).json()  # fmt: skip
    assert results["variants"][0]["conversions"] == 2
