"""Site-wide quotas and erasure on a real Redis Cluster: `limits`' cluster storage,
the ordinal counters summed over nodes, and erasure in the visitor's slot."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from segserver.config import load_settings
from segserver.wiring import Services, build_services

pytestmark = pytest.mark.cluster
NOW = 1_790_000_000.0


@pytest_asyncio.fixture
async def cluster_services(cluster_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(redis_url=cluster_url, key_prefix=f"c{uuid.uuid4().hex[:10]}",
                             data_dir=str(tmp_path))  # fmt: skip
    svc = build_services(settings, clock=lambda: NOW)
    await svc.scripts.load_all()
    yield svc
    await svc.close()


async def test_quota_windows_and_erasure_on_a_cluster(cluster_services: Services) -> None:
    svc = cluster_services
    store = svc.quota_sync.store
    assert await store.add_events("cl", 100, 150) == 0
    assert await store.add_events("cl", 100, 150) > NOW  # over: blocked until a reset
    await svc.sites.create({"id": "cl", "name": "Cluster shop"})
    ctx = await svc.runtime.get("cl")
    await svc.ingestor.ingest(ctx.data, [{"visitor_id": f"v{i}", "type": "page_view"}
                                         for i in range(20)], NOW)  # fmt: skip
    assert await store.new_visitor_total("cl") == 20
    await svc.visitors.erase("cl", "v3", NOW)
    assert await svc.profiles.get("cl", "v3") is None
    assert await svc.profiles.count("cl") == 19
