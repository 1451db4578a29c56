"""The per-site catalogue cache (catalogue/runtime.py) against a real Redis: an edit
made while a load is under way is never hidden by what that load read before it."""

from __future__ import annotations

import asyncio

from segserver.wiring import Services


async def test_a_load_under_way_during_an_edit_never_caches_the_old_catalogue(
    services: Services,
) -> None:
    await services.sites.create({"id": "shop", "name": "Shop"})
    runtime = services.runtime
    ctx = await runtime.get("shop")
    for i in range(12):  # several interleavings of the load's reads and the edit's writes
        runtime.forget("shop")
        loading = asyncio.create_task(runtime.get("shop"))  # e.g. a recompute's load
        await asyncio.sleep(0)  # it has sent its first read
        rule = {"attr": "orders", "op": "gte", "value": i + 1}
        await services.segments.create("shop", {"id": f"s{i}", "rule": rule},
                                       ctx.data.schema.layout, ctx.data.vocab)  # fmt: skip
        runtime.forget("shop")  # what every edit flow does after writing
        await loading
        now = await runtime.get("shop")
        assert f"s{i}" in now.segments, f"edit {i} hidden by a load that began before it"
