"""The catalogue (compare-and-set writes, versions) and the page view on a real
Redis Cluster."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from segserver.config import load_settings
from segserver.errors import ConflictError
from segserver.wiring import Services, build_services

pytestmark = pytest.mark.cluster


@pytest_asyncio.fixture
async def svc(cluster_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(
        redis_url=cluster_url, key_prefix=f"k{uuid.uuid4().hex[:10]}", data_dir=str(tmp_path)
    )
    services = build_services(settings, clock=lambda: 1_790_000_000.0)
    await services.scripts.load_all()
    yield services
    await services.close()


async def test_catalogue_writes_on_a_cluster(svc: Services) -> None:
    await svc.sites.create({"id": "cs", "name": "Cluster shop"})
    ctx = await svc.runtime.get("cs")
    layout, vocab = ctx.data.schema.layout, ctx.data.vocab
    rule = {"attr": "total_spent", "op": "gt", "value": 100}
    seg = await svc.segments.create(
        "cs", {"id": "big", "status": "active", "rule": rule}, layout, vocab
    )
    assert [s.id for s in await svc.segments.all("cs")] == ["big"]
    changed = await svc.segments.update("cs", "big", {"version": 1, "name": "Big"}, layout, vocab)
    assert changed.version == 2
    with pytest.raises(ConflictError):
        await svc.segments.update("cs", "big", {"version": 1, "name": "stale"}, layout, vocab)
    assert [v["version"] for v in await svc.segments.versions("cs", "big")] == [2, 1]
    await svc.items["placement"].create("cs", {"id": "hero", "kind": "banner"})
    assert [p["id"] for p in await svc.items["placement"].all("cs")] == ["hero"]
    assert seg.slot == 0
    assert await svc.catalogue.catalogue_version("cs") == 3
