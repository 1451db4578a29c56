"""Settings that shape the event path, each observed through the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import redis
from aiohttp.test_utils import TestClient, TestServer

from segserver.config import Settings
from segserver.http import create_app
from tests.conftest import Clock, admin_headers

Client = TestClient[Any, Any]


@pytest_asyncio.fixture
async def tight(settings: Settings, clock: Clock) -> AsyncIterator[tuple[Client, str]]:
    custom = settings.model_copy(
        update={
            "max_events_per_request": 3,
            "dedup_window_seconds": 60,
            "profile_ttl_days": 2,
            "tag_slots": 2,
        }
    )
    async with TestClient(TestServer(create_app(custom, clock=clock))) as client:
        resp = await client.post("/v1/admin/sites", headers=admin_headers(), json={"id": "s"})
        yield client, (await resp.json())["server_key"]


async def test_max_events_per_request(tight: tuple[Client, str]) -> None:
    client, key = tight
    events = [{"visitor_id": "v", "type": "page_view"}] * 4
    resp = await client.post("/v1/events", headers={"Authorization": f"Bearer {key}"}, json=events)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "too_many_events"


async def test_event_ids_are_forgotten_after_the_dedup_window(
    tight: tuple[Client, str], clock: Clock
) -> None:
    client, key = tight
    ev = [{"visitor_id": "v", "type": "page_view", "event_id": "same"}]
    first = await client.post("/v1/events", headers={"Authorization": f"Bearer {key}"}, json=ev)
    assert (await first.json())["results"][0]["status"] == "stored"
    clock.advance(30)
    again = await client.post("/v1/events", headers={"Authorization": f"Bearer {key}"}, json=ev)
    assert (await again.json())["results"][0]["status"] == "duplicate"
    clock.advance(61)
    late = await client.post("/v1/events", headers={"Authorization": f"Bearer {key}"}, json=ev)
    assert (await late.json())["results"][0]["status"] == "stored"


async def test_profile_ttl_and_tag_slots(tight: tuple[Client, str], settings: Settings) -> None:
    client, key = tight
    resp = await client.post(
        "/v1/events",
        headers={"Authorization": f"Bearer {key}"},
        json=[{"visitor_id": "v", "type": "identify", "properties": {"tags": ["a", "b", "c"]}}],
    )
    assert resp.status == 400
    assert "at most 2 tags" in (await resp.json())["error"]["message"]
    await client.post(
        "/v1/events",
        headers={"Authorization": f"Bearer {key}"},
        json=[{"visitor_id": "v", "type": "login"}],
    )
    with redis.Redis.from_url(settings.redis_url) as r:
        (profile_key,) = r.keys(f"{settings.key_prefix}:*:p:v")
        assert 0 < r.ttl(profile_key) <= 2 * 86400
