"""Degraded mode: with Redis stopped or frozen mid-test, /v1/context answers within
its budget with the fallback and reports the events as not stored; then recovers."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from segserver.config import load_settings
from segserver.http import create_app
from segserver.http.keys import SERVICES
from segserver.storage.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN, Clock, admin_headers

Client = TestClient[Any, Any]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "r", appendonly=True)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest_asyncio.fixture
async def app_client(own_redis: EmbeddedRedis, data_dir: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        redis_url=own_redis.url, key_prefix=f"d{uuid.uuid4().hex[:8]}", admin_token=ADMIN_TOKEN,
        data_dir=str(data_dir), redis_budget_ms=100, catalogue_cache_seconds=0.0,
        expiry_interval_seconds=0, trigger_poll_seconds=0, redis_timeout_ms=300,
    )  # fmt: skip
    async with TestClient(TestServer(create_app(settings, clock=Clock()))) as client:
        yield client


async def test_fallback_then_recovery(app_client: Client, own_redis: EmbeddedRedis) -> None:
    client = app_client
    made = await client.post("/v1/admin/sites", headers=admin_headers(),
                             json={"id": "s", "prebuilt": False})  # fmt: skip
    key = {"X-Segserver-Key": (await made.json())["site_key"]}
    base = "/v1/admin/sites/s"
    for path, body in (
        ("content", {"id": "dflt", "kind": "banner", "payload": {"title": "Hello"}}),
        ("content", {"id": "promo", "kind": "banner", "payload": {"title": "Promo"}}),
        ("placements", {"id": "hero", "kind": "banner", "default_content": "dflt"}),
        ("campaigns", {"id": "c", "placement": "hero", "status": "active",
                       "variants": [{"id": "a", "content": "promo"}]}),
    ):  # fmt: skip
        assert (
            await client.post(f"{base}/{path}", headers=admin_headers(), json=body)
        ).status == 201
    body = {"visitor_id": "v", "placements": ["hero"],
            "events": [{"type": "page_view", "event_id": "e1"}]}  # fmt: skip
    ok = await (await client.post("/v1/context", headers=key, json=body)).json()
    assert ok["degraded"] is False
    assert ok["decisions"]["hero"]["campaign"] == "c"

    assert own_redis.process is not None
    for stop, resume in ((signal.SIGSTOP, signal.SIGCONT), (None, None)):
        if stop is not None:  # frozen: the time budget ends the wait
            os.kill(own_redis.process.pid, stop)
        else:  # stopped: connections fail at once
            own_redis.stop()
        body = {**body, "events": [{"type": "page_view", "event_id": f"e-{stop}"}]}
        resp = await client.post("/v1/context", headers=key, json=body)
        assert resp.status == 200
        answer = await resp.json()
        assert answer["degraded"] is True
        assert answer["segments"] == []
        # frozen: the script was sent and may run when Redis resumes ("pending", safe to
        # retry with the same event id); stopped: nothing was sent ("not_stored")
        status = "pending" if stop is not None else "not_stored"
        assert answer["events"] == [{"index": 0, "status": status}]
        assert answer["decisions"]["hero"] == {
            "campaign": None,
            "variant": None,
            "token": None,
            "content": {"id": "dflt", "kind": "banner", "payload": {"title": "Hello"}},
        }
        if resume is not None:
            os.kill(own_redis.process.pid, resume)
        else:
            own_redis.start()
        again = await (await client.post("/v1/context", headers=key, json=body)).json()
        assert again["degraded"] is False, again
        assert again["decisions"]["hero"]["campaign"] == "c"
    metrics = await (await client.get("/metrics")).text()
    assert "segserver_degraded_answers_total 2.0" in metrics


async def test_metrics_report_requests_evaluations_and_events(app_client: Client) -> None:
    client = app_client
    made = await client.post("/v1/admin/sites", headers=admin_headers(), json={"id": "m"})
    key = {"X-Segserver-Key": (await made.json())["site_key"]}
    for i in range(3):
        body = {"visitor_id": f"v{i}", "events": [{"type": "page_view"}, {"type": "nope"}]}
        assert (await client.post("/v1/context", headers=key, json=body)).status == 200
    text = await (await client.get("/metrics")).text()
    assert 'segserver_request_seconds_count{route="/v1/context",status="2xx"} 3.0' in text
    assert "segserver_evaluation_seconds_count 3.0" in text
    assert 'segserver_events_total{status="stored"} 3.0' in text
    assert 'segserver_events_total{status="rejected"} 3.0' in text


@pytest.mark.parametrize("fault", ["freeze", "stop"])
async def test_a_site_not_cached_yet_gets_the_degraded_answer_while_redis_is_out(
    fault: str, app_client: Client, own_redis: EmbeddedRedis
) -> None:
    """Its catalogue cannot be read: nothing stored, no content, 200 (never a 503),
    and /readyz says Redis is down (503: no node answers)."""
    client = app_client
    made = await client.post("/v1/admin/sites", headers=admin_headers(),
                             json={"id": "fresh", "prebuilt": False})  # fmt: skip
    key = {"X-Segserver-Key": (await made.json())["site_key"]}
    client.app[SERVICES].runtime.forget("fresh")  # as in a process that never served it
    assert own_redis.process is not None
    if fault == "freeze":
        os.kill(own_redis.process.pid, signal.SIGSTOP)
    else:
        own_redis.stop()
    body = {"visitor_id": "v", "placements": ["hero"],
            "events": [{"type": "page_view", "event_id": "e1"}]}  # fmt: skip
    resp = await client.post("/v1/context", headers=key, json=body)
    assert resp.status == 200
    assert await resp.json() == {
        "visitor_id": "v", "segments": [], "decisions": {"hero": None}, "degraded": True,
        "events": [{"index": 0, "status": "not_stored"}], "catalogue_version": "0",
    }  # fmt: skip
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["redis"] == "down"
    if fault == "freeze":
        os.kill(own_redis.process.pid, signal.SIGCONT)
    else:
        own_redis.start()
    resp = await client.post("/v1/context", headers=key, json=body)
    answer = await resp.json()
    assert (resp.status, answer["degraded"], answer["events"]) == (
        200, False, [{"index": 0, "status": "stored"}])  # fmt: skip


async def test_a_cached_site_is_refreshed_once_a_second_while_redis_is_out(
    app_client: Client, own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """The cached catalogue keeps serving; its background refresh is tried again a
    second after a failure, not by every page view (nor logged by each)."""
    client = app_client
    made = await client.post("/v1/admin/sites", headers=admin_headers(),
                             json={"id": "s", "prebuilt": False})  # fmt: skip
    key = {"X-Segserver-Key": (await made.json())["site_key"]}
    body = {"visitor_id": "v", "events": [{"type": "page_view"}]}
    assert (await client.post("/v1/context", headers=key, json=body)).status == 200
    runtime = client.app[SERVICES].runtime
    now = [1000.0]
    runtime.clock = lambda: now[0]  # a frozen clock: attempts are counted, not timed
    runtime.contexts["s"].loaded_at = now[0]
    loads = 0
    load = runtime._load

    async def counting(site_id: str) -> Any:
        nonlocal loads
        loads += 1
        return await load(site_id)

    runtime._load = counting
    own_redis.stop()
    now[0] += runtime.ttl + 0.01  # the cached entry is due for a refresh
    for _ in range(3):
        for _ in range(20):
            resp = await client.post("/v1/context", headers=key, json=body)
            assert resp.status == 200 and (await resp.json())["degraded"] is True
            if runtime.refreshing:
                await asyncio.gather(*runtime.refreshing.values())
        now[0] += 1.01
    assert loads == 3
    refreshes = [r for r in caplog.records if "catalogue refresh failed" in r.getMessage()]
    assert len(refreshes) == 1
