"""Reading results back after a fault, through the admin API of an in-process app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from segserver.bench.faultload import Load, Reconciled, Tally, reconcile
from tests.conftest import admin_headers


async def page_views(client: Any, visitors: Iterable[str], within: float = 30.0) -> dict[str, int]:
    """Each visitor's `page_views`. After a Redis restart each pooled connection of
    redis-py fails its first command once (a clean 503: "Connection closed by server"),
    so a 503 is read again until `within` seconds have passed; anything else fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    out = {}
    for visitor in visitors:
        while True:
            resp = await client.get(f"/v1/admin/sites/s/visitors/{visitor}",
                                    headers=admin_headers())  # fmt: skip
            if resp.status != 503 or loop.time() > deadline:
                break
        assert resp.status == 200, await resp.text()
        out[visitor] = int((await resp.json())["attributes"]["page_views"])
    return out


async def settled(load: Load, tally: Tally, client: Any) -> Reconciled:
    """After the load stopped: its unacknowledged events sent again with their ids until
    acknowledged, then what each visitor's profile counts reconciled with what was
    acknowledged while the load ran."""
    acked = tally.acknowledged
    await load.retry_unacknowledged()
    return reconcile(tally, await page_views(client, tally.sent), acked)
