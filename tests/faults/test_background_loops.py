"""The background loops of a real app through real Redis faults: Redis frozen
(SIGSTOP), stopped (SIGTERM) and killed (-9), each time started again on the same
append-only file. Meanwhile /readyz names the stale loop; afterwards every visitor
that became due meanwhile exits its segment exactly once, by itself, and the log
holds a few lines, not one per failed round. And a fault outside: a webhook
receiver that never answers keeps the trigger loop busy but not stale."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from segserver.config import Settings, load_settings
from segserver.http import create_app
from segserver.http.keys import SERVICES
from segserver.profile.identity import shard_of
from tests.conftest import ADMIN_TOKEN, Clock, admin_headers
from tests.faults.procs import RedisNode
from tests.integration.test_triggers import Receiver

Client = TestClient[Any, Any]
HOUR = 3600.0
VISITORS = 5


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 30) -> Any:
    """Await `check` until it gives something true; fail naming `what` after `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"waited {within:.0f} s: {what}"
        await asyncio.sleep(0.05)


def fault_settings(node: RedisNode, data_dir: Path) -> Settings:
    return load_settings(
        redis_url=node.url, key_prefix=f"f{uuid.uuid4().hex[:8]}", admin_token=ADMIN_TOKEN,
        data_dir=str(data_dir), shards=4, redis_timeout_ms=300, redis_budget_ms=2000,
        expiry_interval_seconds=0.05, loop_stale_seconds=0.5, loop_backoff_max_seconds=0.2,
        trigger_poll_seconds=0.05, history_interval_seconds=3600,
    )  # fmt: skip


async def readyz(client: Client) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz")
    body: dict[str, Any] = await resp.json()
    return resp.status, body


async def expiry_exits(client: Client, site: str) -> list[str]:
    """Visitors with an exit caused by expiry in the site's change streams."""
    services = client.app[SERVICES]
    out = []
    for shard in range(services.keys.shards):
        for _, fields in await services.clients.raw.xrange(services.keys.changes(site, shard)):
            if fields[b"why"] == b"expiry" and fields[b"c"] == b"exited":
                out.append(fields[b"v"].decode())
    return sorted(out)


async def size(client: Client, site: str, segment: str) -> int:
    resp = await client.get(f"/v1/admin/sites/{site}/segments/{segment}/stats",
                            headers=admin_headers())  # fmt: skip
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["size"])


def break_redis(node: RedisNode, fault: str) -> None:
    {"freeze": node.freeze, "stop": node.stop, "kill": node.kill}[fault]()


def mend_redis(node: RedisNode, fault: str) -> None:
    if fault == "freeze":
        node.thaw()
    else:
        node.start()


@pytest.mark.parametrize("fault", ["freeze", "stop", "kill"])
async def test_expiry_resumes_after_a_redis_fault_and_misses_no_exit(
    fault: str, redis_node: RedisNode, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="segserver.loops")
    settings, clock = fault_settings(redis_node, data_dir), Clock()
    async with TestClient(TestServer(create_app(settings, clock=clock))) as client:
        made = await client.post("/v1/admin/sites", headers=admin_headers(),
                                 json={"id": "s", "prebuilt": False})  # fmt: skip
        key = {"X-Segserver-Key": (await made.json())["site_key"]}
        segment = {"id": "active", "status": "active",
                   "rule": {"attr": "last_seen", "op": "within", "value": "1h"}}  # fmt: skip
        resp = await client.post("/v1/admin/sites/s/segments", headers=admin_headers(),
                                 json=segment)  # fmt: skip
        assert resp.status == 201, await resp.text()
        events = [{"visitor_id": f"v{i}", "type": "page_view"} for i in range(VISITORS)]
        assert (await client.post("/v1/events", headers=key, json=events)).status == 202
        assert await size(client, "s", "active") == VISITORS
        status, body = await readyz(client)
        assert (status, body["stale"], body["loops"]["expiry"]["failures"]) == (200, [], 0)
        loops = set(body["loops"])
        assert loops == {"expiry", "history", "triggers", "sweep", "quotas", "jobs"}

        break_redis(redis_node, fault)
        clock.advance(HOUR + 1)  # every visitor is due now, while Redis is out

        async def stale() -> bool:
            status, body = await readyz(client)  # history's period is an hour: not yet
            # expiry and delivery poll Redis every fraction of a second; the sweep (resting
            # after a pass) and the quota sync (with nothing to sync) may not need it
            stale = set(body["stale"])
            return status == 503 and {"expiry", "triggers"} <= stale <= loops - {"history"}

        await eventually(stale, "/readyz naming the stale expiry and trigger loops")
        _, body = await readyz(client)
        assert body["loops"]["expiry"]["failures"] > 0
        assert body["loops"]["expiry"]["error"]

        mend_redis(redis_node, fault)
        # a claim sent while Redis was frozen runs when it thaws, its answer lost:
        # such visitors are taken over when their lease ends (business time)
        clock.advance(settings.expiry_lease_seconds + 1)

        async def ready() -> bool:
            status, _ = await readyz(client)
            return status == 200

        await eventually(ready, "/readyz ready again")

        async def resumed() -> bool:
            # each loop's last round succeeded (`failures` counts failed rounds in a row);
            # a round may still fail once after /readyz is ready again, on a pooled
            # connection opened before the restart ("Connection closed by server")
            _, body = await readyz(client)
            return all(loop["failures"] == 0 for loop in body["loops"].values())

        await eventually(resumed, "every loop resumed after the fault")

        async def all_exited() -> list[str]:
            exits = await expiry_exits(client, "s")
            return exits if len(exits) >= VISITORS else []

        exits = await eventually(all_exited, f"{VISITORS} exits by expiry")
        assert exits == [f"v{i}" for i in range(VISITORS)]  # each exactly once
        assert await size(client, "s", "active") == 0
        metrics = await (await client.get("/metrics")).text()
        failed = [line for line in metrics.splitlines()
                  if line.startswith('segserver_loop_failures_total{loop="expiry"}')]  # fmt: skip
        assert failed and float(failed[0].split()[-1]) > 0
        probes = [line for line in metrics.splitlines()
                  if line.startswith("segserver_event_loop_lag_seconds_count")]  # fmt: skip
        assert probes and float(probes[0].split()[-1]) > 0  # the lag probe runs in the app

    lines = [r.getMessage() for r in caplog.records if r.name == "segserver.loops"]
    failures = [m for m in lines if m.startswith("expiry loop: a round failed")]
    assert 1 <= len(failures) <= 3, lines  # distinct kinds once each, not once per round
    assert sum(m.startswith("expiry loop: recovered after") for m in lines) == 1, lines


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook endpoint (tests/integration/test_triggers.py); /hook/hang never answers."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{name}", rec.handle)
    rec.server = TestServer(app, host="127.0.0.1")
    await rec.server.start_server()
    yield rec
    rec.release.set()
    await rec.server.close()


async def test_a_slow_webhook_receiver_never_makes_the_server_unready(
    settings: Settings, receiver: Receiver
) -> None:
    """Deliveries timing out one after another hold the trigger loop's round far
    longer than the staleness threshold; each attempt is progress, so /readyz stays
    200 throughout (a customer's slow endpoint must not take page views down)."""
    settings = settings.model_copy(update={
        "trigger_poll_seconds": 0.05, "trigger_timeout_seconds": 0.2, "trigger_concurrency": 1,
        "trigger_retries": 0, "loop_stale_seconds": 1.0, "expiry_interval_seconds": 0,
        "history_interval_seconds": 0,
    })  # fmt: skip
    async with TestClient(TestServer(create_app(settings, clock=Clock()))) as client:
        loopback = {"webhook_networks": ["127.0.0.0/8"]}  # the receiver's address
        made = await client.post(
            "/v1/admin/sites",
            headers=admin_headers(),
            json={"id": "shop", "prebuilt": False, "options": loopback},
        )
        assert made.status == 201
        resp = await client.post("/v1/admin/sites/shop/triggers", headers=admin_headers(),
                                 json={"url": receiver.url("hang")})  # fmt: skip
        assert resp.status == 201, await resp.text()
        services = client.app[SERVICES]
        changes = 10  # 10 time-outs of 0.2 s in a row: 2 s in one round
        for i in range(changes):
            stream = services.keys.changes("shop", shard_of(f"v{i}", settings.shards))
            change = {"v": f"v{i}", "s": "vip", "c": "entered", "t": "1790000000.5", "why": "event"}
            await services.clients.raw.xadd(stream, change)
        statuses = []
        while len(receiver.hits) < changes:
            statuses.append((await readyz(client))[0])
            await asyncio.sleep(0.05)
        assert set(statuses) == {200}
        status, body = await readyz(client)
        assert status == 200 and body["loops"]["triggers"]["failures"] == 0
