"""Redis killed with -9 (and started again on its append-only file) or frozen with
SIGSTOP for a while, in the middle of a load of page views and event batches with
event ids, the server up throughout: no answer is a 5xx other than a clean 503,
answers meanwhile are degraded, full ones come back by themselves; afterwards every
acknowledged event is in its profile, retries with the same ids count nothing twice,
and every visitor that became due during the fault exits its segment exactly once
(claims of a round that failed on a connection broken by the fault are handed back,
not left to their lease).

(test_processes.py kills the server itself; test_background_loops.py breaks Redis
without load.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from segserver.bench.faultload import Load
from segserver.http import create_app
from tests.conftest import Clock, admin_headers
from tests.faults.procs import RedisNode
from tests.faults.reads import settled
from tests.faults.test_background_loops import HOUR, eventually, expiry_exits, fault_settings

pytestmark = pytest.mark.slow
IDLE = [f"idle{i}" for i in range(5)]  # one event before the fault, due during it


async def until(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    async def ready() -> bool:
        return check()

    await eventually(ready, what, within)


@pytest.mark.parametrize("fault", ["kill", "freeze"])
async def test_redis_fault_under_load(fault: str, redis_node: RedisNode, data_dir: Path) -> None:
    settings, clock = fault_settings(redis_node, data_dir), Clock()
    async with TestClient(TestServer(create_app(settings, clock=clock))) as client:
        made = await client.post("/v1/admin/sites", headers=admin_headers(),
                                 json={"id": "s", "prebuilt": False})  # fmt: skip
        site_key = (await made.json())["site_key"]
        segment = {"id": "active", "status": "active",
                   "rule": {"attr": "last_seen", "op": "within", "value": "1h"}}  # fmt: skip
        resp = await client.post("/v1/admin/sites/s/segments", headers=admin_headers(),
                                 json=segment)  # fmt: skip
        assert resp.status == 201, await resp.text()
        idle = [{"visitor_id": v, "type": "page_view", "event_id": "first"} for v in IDLE]
        resp = await client.post("/v1/events", json=idle, headers={"X-Segserver-Key": site_key})
        assert (await resp.json())["stored"] == len(IDLE)

        base = str(client.make_url("")).rstrip("/")
        load = Load(base, site_key, [f"v{i}" for i in range(24)], concurrency=12)
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        try:
            await until(lambda: load.tally.count("before") >= 150, "load before the fault")
            load.phase = "during"
            (redis_node.kill if fault == "kill" else redis_node.freeze)()
            clock.advance(HOUR + 1)  # every idle visitor is due now, while Redis is out
            await until(lambda: load.tally.count("during") >= 100, "requests during the fault")
            if fault == "kill":
                await asyncio.to_thread(redis_node.start)
            else:
                redis_node.thaw()
            load.phase = "after"
            # a claim sent while Redis was frozen runs when it thaws, its answer lost:
            # such visitors are taken over when their lease ends (business time)
            clock.advance(settings.expiry_lease_seconds + 1)
            await until(lambda: load.tally.count("after", kind="ok") >= 100, "full answers again")
        finally:
            stop.set()
            tally = await running
        figures = await settled(load, tally, client)

        async def idle_exits() -> list[str]:
            exits = [v for v in await expiry_exits(client, "s") if v in IDLE]
            return exits if len(exits) >= len(IDLE) else []

        exits = await eventually(idle_exits, f"{len(IDLE)} exits by expiry")

    assert tally.count(kind="5xx") == 0, tally.bodies_5xx[:5]
    assert tally.count(kind="no_answer") == tally.count(kind="4xx") == 0
    felt: dict[str, Any] = {k: tally.count("during", kind=k) for k in ("degraded", "503")}
    assert sum(felt.values()) > 0  # (requests around the moment Redis came back are full)
    assert figures.acknowledged > 0
    assert (figures.lost, figures.doubled) == (0, 0)
    assert exits == IDLE  # each exactly once
