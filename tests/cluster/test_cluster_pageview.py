"""The page view on a real Redis Cluster through the real app: two round trips per page
view (each one slot: the visitor's shard), caps that hold under 40 concurrent page
views of one visitor, membership committed for visitors of every shard, and the
script cache lost on every node (NOSCRIPT) recovered by the multiplexed client."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio.cluster import RedisCluster

from segserver.config import load_settings
from segserver.http import create_app
from segserver.http.keys import SERVICES
from tests.conftest import ADMIN_TOKEN, Clock, admin_headers

pytestmark = pytest.mark.cluster
Client = TestClient[Any, Any]
BASE = "/v1/admin/sites/cl"


@pytest_asyncio.fixture
async def app_client(cluster_url: str, data_dir: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        redis_url=cluster_url, key_prefix=f"c{uuid.uuid4().hex[:10]}", data_dir=str(data_dir),
        admin_token=ADMIN_TOKEN, redis_budget_ms=5000, expiry_interval_seconds=0,
        history_interval_seconds=0, trigger_poll_seconds=0, jobs_poll_seconds=0,
        quota_sync_seconds=0, expired_sweep_per_second=0,
        catalogue_cache_seconds=3600,
    )  # fmt: skip
    async with TestClient(TestServer(create_app(settings, clock=Clock()))) as client:
        yield client


async def metric(client: Client, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(rf"^{name} ([\d.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_page_views_on_a_cluster(app_client: Client, cluster_url: str) -> None:
    client, admin = app_client, admin_headers()
    made = await client.post("/v1/admin/sites", headers=admin, json={"id": "cl", "prebuilt": False})
    key = {"X-Segserver-Key": (await made.json())["site_key"]}
    seg = {"id": "viewers", "status": "active",
           "rule": {"attr": "page_views", "op": "gte", "value": 1}}  # fmt: skip
    for path, body in (
        ("segments", seg),
        ("placements", {"id": "flash", "kind": "banner"}),
        ("content", {"id": "c", "kind": "banner", "payload": {"title": "T"}}),
        ("campaigns", {"id": "camp", "placement": "flash", "status": "active",
                       "audience": {"include": ["viewers"]},
                       "variants": [{"id": "a", "content": "c"}],
                       "caps": [{"per": "day", "max": 3}]}),
    ):  # fmt: skip
        resp = await client.post(f"{BASE}/{path}", headers=admin, json=body)
        assert resp.status == 201, await resp.text()

    async def view(vid: str) -> dict[str, Any]:
        body = {"visitor_id": vid, "placements": ["flash"], "events": [{"type": "page_view"}]}
        resp = await client.post("/v1/context", headers=key, json=body)
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        assert answer["degraded"] is False
        return answer

    await client.app[SERVICES].recomputer.wait()  # the new segment's job makes round trips too
    await view("warm")  # the catalogue is cached from here on
    trips = await metric(client, "segserver_redis_round_trips_total")
    answers = await asyncio.gather(*(view(f"v{i}") for i in range(60)))
    assert await metric(client, "segserver_redis_round_trips_total") == trips + 60 * 2
    assert all(a["segments"] == ["viewers"] for a in answers)
    assert all(a["decisions"]["flash"]["campaign"] == "camp" for a in answers)

    # caps: 40 concurrent page views of one visitor serve exactly 3
    capped = await asyncio.gather(*(view("cap") for _ in range(40)))
    assert sum(a["decisions"]["flash"] is not None for a in capped) == 3

    # stored membership on every shard: the segment's size counts all 61 + 1 visitors
    stats = await (await client.get(f"{BASE}/segments/viewers/stats", headers=admin)).json()
    assert stats["size"] == 62

    # every node forgets its scripts: the next page views reload them (NOSCRIPT → EVAL)
    cluster = RedisCluster.from_url(cluster_url.replace("+cluster", ""))
    try:
        await cluster.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    finally:
        await cluster.aclose()
    again = await asyncio.gather(*(view(f"w{i}") for i in range(20)))
    assert all(a["segments"] == ["viewers"] for a in again)
