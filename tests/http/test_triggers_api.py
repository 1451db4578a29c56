"""Triggers through the admin API of the real app, delivering to a real local
aiohttp receiver: subscriptions (create, read, change, delete, validation), dead
letters and re-drive, and the background runner started with the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from segserver.config import Settings
from segserver.http import create_app
from segserver.http.keys import SERVICES
from segserver.http.triggers_routes import TRIGGERS_BACKGROUND
from segserver.jobs.triggers import DELIVERY_FAILED
from segserver.profile.identity import shard_of
from segserver.storage.keys import Keys
from tests.conftest import Clock, admin_headers
from tests.integration.test_triggers import Receiver

Client = TestClient[Any, Any]
BASE = "/v1/admin/sites/shop/triggers"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings without the exact-expiry loop: these tests are not about it,
    and its task may not stop at shutdown (redis-py can swallow a cancellation that
    lands inside a command; see the runner's loop in jobs/triggers.py)."""
    if "expiry_interval_seconds" not in Settings.model_fields:
        return settings
    return settings.model_copy(update={"expiry_interval_seconds": 0})


def triggers_app(settings: Settings, clock: Clock, background: bool) -> web.Application:
    app = create_app(settings, clock=clock)
    app[TRIGGERS_BACKGROUND] = background
    return app


@pytest_asyncio.fixture
async def client(settings: Settings, clock: Clock) -> AsyncIterator[Client]:
    """The app with the runner stepped by the test (overrides conftest's `client`)."""
    async with TestClient(TestServer(triggers_app(settings, clock, False))) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{name}", rec.handle)
    rec.server = TestServer(app, host="127.0.0.1")
    await rec.server.start_server()
    yield rec
    rec.release.set()
    await rec.server.close()


async def create(client: Client, receiver: Receiver, name: str, **body: Any) -> dict[str, Any]:
    # the receiver listens on 127.0.0.1: the site allow-lists it for its webhooks
    allow = await client.patch("/v1/admin/sites/shop", headers=admin_headers(),
                               json={"options": {"webhook_networks": ["127.0.0.0/8"]}})  # fmt: skip
    assert allow.status == 200, await allow.text()
    resp = await client.post(
        BASE, headers=admin_headers(), json={"url": receiver.url(name), **body}
    )
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    receiver.secrets[data["id"]] = data["secret"]
    return data


async def emit(redis: aioredis.Redis, settings: Settings, visitor: str, change: str) -> None:
    keys = Keys(settings.key_prefix, settings.shards)
    stream = keys.changes("shop", shard_of(visitor, settings.shards))
    await redis.xadd(
        stream, {"v": visitor, "s": "vip", "c": change, "t": "1790000000.5", "why": "expiry"}
    )


async def test_subscriptions_crud(
    client: Client, site: dict[str, Any], receiver: Receiver, clock: Clock
) -> None:
    made = await create(client, receiver, "a", segments=["vip", "vip"], changes="entered")
    assert made["secret"].startswith("whsec_")
    assert made["segments"] == ["vip"]
    assert (made["changes"], made["active"], made["version"]) == ("entered", True, 1)
    assert made["created_at"] == clock.now
    url = f"{BASE}/{made['id']}"
    got = await (await client.get(url, headers=admin_headers())).json()
    assert "secret" not in got
    assert got == {k: v for k, v in made.items() if k != "secret"}
    listing = await (await client.get(BASE, headers=admin_headers())).json()
    assert [t["id"] for t in listing["triggers"]] == [made["id"]]
    assert listing["triggers"][0]["deliveries"] == {"delivered": 0, "failed": 0,
                                                    "last_at": None, "last": None}  # fmt: skip

    clock.advance(5)
    patched = await client.patch(
        url, headers=admin_headers(), json={"active": False, "segments": [], "version": 1}
    )
    assert patched.status == 200, await patched.text()
    body = await patched.json()
    assert (body["active"], body["segments"], body["version"]) == (False, [], 2)
    assert body["updated_at"] == clock.now
    stale = await client.patch(url, headers=admin_headers(), json={"active": True, "version": 1})
    assert stale.status == 409
    assert (await stale.json())["error"]["code"] == "stale_version"

    assert (await client.delete(url, headers=admin_headers())).status == 204
    assert (await client.get(url, headers=admin_headers())).status == 404
    assert (await client.delete(url, headers=admin_headers())).status == 404
    listing = await (await client.get(BASE, headers=admin_headers())).json()
    assert listing == {"triggers": [], "retrying": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://x.example/hook"}, "url"),
        ({"url": "https:///nohost"}, "url"),
        ({"url": "https://x.example/#frag"}, "url"),
        ({"url": "https://x.example", "segments": "vip"}, "segments"),
        ({"url": "https://x.example", "segments": ["ok", "Not OK"]}, "segments[1]"),
        ({"url": "https://x.example", "changes": "joined"}, "changes"),
        ({"url": "https://x.example", "active": "yes"}, "active"),
        ({"url": "https://x.example", "colour": "red"}, "colour"),
        ([], "body"),
    ],
)
async def test_bad_subscriptions_name_the_field(
    client: Client, site: dict[str, Any], body: Any, field: str
) -> None:
    resp = await client.post(BASE, headers=admin_headers(), json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith(f"{field}:")
    assert (await (await client.get(BASE, headers=admin_headers())).json())["triggers"] == []


async def test_unknown_site_trigger_and_missing_token(client: Client, site: dict[str, Any]) -> None:
    nowhere = await client.get("/v1/admin/sites/nowhere/triggers", headers=admin_headers())
    assert nowhere.status == 404
    for path in (f"{BASE}/tr_0123456789abcdef", f"{BASE}/not-an-id"):
        resp = await client.get(path, headers=admin_headers())
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    assert (await client.get(BASE)).status == 401
    assert (await client.post(f"{BASE}/dead-letters/redrive")).status == 401
    bad = await client.get(f"{BASE}/dead-letters?limit=0", headers=admin_headers())
    assert (await bad.json())["error"]["message"].startswith("limit:")
    bad = await client.post(
        f"{BASE}/dead-letters/redrive", headers=admin_headers(), json={"ids": "x"}
    )
    assert (await bad.json())["error"]["message"].startswith("ids:")


async def test_delivery_dead_letters_and_redrive_through_the_api(
    client: Client,
    site: dict[str, Any],
    receiver: Receiver,
    clock: Clock,
    raw_redis: aioredis.Redis,
    settings: Settings,
) -> None:
    runner = client.app[SERVICES].trigger_runner
    ok = await create(client, receiver, "ok")
    down = await create(client, receiver, "down", changes="exited")
    receiver.failures["down"] = -1
    await emit(raw_redis, settings, "v1", "exited")
    await runner.run_once(clock.now)
    [hit] = receiver.of("ok")
    assert hit.signed and hit.body["cause"] == "expiry" and hit.body["at"] == 1790000000.5
    # the default settings: 5 retries, then the dead-letter list
    for _ in range(5):
        clock.advance(1000)
        await runner.run_once(clock.now)
    assert [h.attempt for h in receiver.hits if h.name == "down"] == [1, 2, 3, 4, 5, 6]

    listed = await (await client.get(BASE, headers=admin_headers())).json()
    counts = {t["id"]: t["deliveries"] for t in listed["triggers"]}
    assert counts[ok["id"]] == {"delivered": 1, "failed": 0, "last_at": clock.now - 5000,
                                "last": "delivered"}  # fmt: skip
    assert counts[down["id"]] == {"delivered": 0, "failed": 6, "last_at": clock.now,
                                  "last": "failed"}  # fmt: skip
    assert listed["retrying"] == 0  # the last failure made a dead letter, not a retry

    letters = await client.get(f"{BASE}/dead-letters", headers=admin_headers())
    body = await letters.json()
    assert body["total"] == 1
    [dead] = body["dead_letters"]
    assert (dead["subscription"], dead["attempts"], dead["last_error"]) == (
        down["id"],
        6,
        DELIVERY_FAILED,
    )
    assert dead["payload"]["visitor_id"] == "v1"
    assert dead["failed_at"] == clock.now
    of_ok = await client.get(
        f"{BASE}/dead-letters?subscription={ok['id']}", headers=admin_headers()
    )
    assert await of_ok.json() == {"dead_letters": [], "total": 0}

    receiver.failures["down"] = 0
    redrive = await client.post(
        f"{BASE}/dead-letters/redrive", headers=admin_headers(), json={"ids": [dead["id"]]}
    )
    assert await redrive.json() == {"redriven": 1}
    again = await client.post(f"{BASE}/dead-letters/redrive", headers=admin_headers())
    assert await again.json() == {"redriven": 0}
    assert (await runner.run_once(clock.now)).delivered == 1
    [fixed] = receiver.of("down")
    assert fixed.signed and fixed.key == dead["id"]
    listed = await (await client.get(BASE, headers=admin_headers())).json()
    assert [t["deliveries"]["last"] for t in listed["triggers"] if t["id"] == down["id"]] == [
        "delivered"
    ]
    await client.delete(f"{BASE}/{down['id']}", headers=admin_headers())
    stats = await raw_redis.hkeys(f"{settings.key_prefix}:{{shop}}:trigger-stats")
    assert stats and all(k.decode().startswith(ok["id"]) for k in stats)  # its counters gone
    letters = await client.get(f"{BASE}/dead-letters", headers=admin_headers())
    assert (await letters.json())["total"] == 0


async def test_the_app_delivers_in_the_background(
    settings: Settings, clock: Clock, receiver: Receiver, raw_redis: aioredis.Redis
) -> None:
    app = triggers_app(settings, clock, True)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(
            "/v1/admin/sites", headers=admin_headers(), json={"id": "shop", "name": "Shop"}
        )
        assert resp.status == 201
        await create(client, receiver, "bg")
        await emit(raw_redis, settings, "v9", "entered")
        # a guard against a hang, not a timing assertion
        await asyncio.wait_for(receiver.arrived.wait(), timeout=30)
        [hit] = receiver.of("bg")
        assert hit.signed and hit.body["visitor_id"] == "v9"
