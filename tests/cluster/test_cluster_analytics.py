"""Segment analytics on a real Redis Cluster: every script call of one shard stays in
the shard's slot (temporary keys too), and counts fan out over every node.

The segments are in-memory records: on a cluster the catalogue's redis-om records are
not readable back yet (SegmentService.get → not found), which is not this suite's
subject; the storage and the analytics over it are."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from segserver.catalogue.analytics import SegmentAnalytics
from segserver.catalogue.segments import Segment
from segserver.config import load_settings
from segserver.demo import DEMO_SCHEMA, seed_profiles
from segserver.storage.analytics import AnalyticsStore
from segserver.storage.bulk import BulkReader
from segserver.storage.jobs import ShardReader
from segserver.wiring import Services, build_services

pytestmark = pytest.mark.cluster
NOW = 1_790_000_000.0


@pytest_asyncio.fixture
async def cluster_services(cluster_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(
        redis_url=cluster_url, key_prefix=f"c{uuid.uuid4().hex[:10]}", data_dir=str(tmp_path)
    )
    svc = build_services(settings, clock=lambda: NOW)
    await svc.scripts.load_all()
    yield svc
    await svc.close()


def static(sid: str, slot: int) -> Segment:
    return Segment(sid, sid, "", (), "static", "active", 0, {}, slot, "", False, NOW, NOW, 1)


async def test_analytics_on_a_cluster(cluster_services: Services) -> None:
    """Static members written per shard, then counted, combined, overlapped, previewed
    and exported; the segments are in-memory records (the storage under test)."""
    svc = cluster_services
    await svc.sites.create({"id": "cl", "name": "Cluster shop", "schema": DEMO_SCHEMA})
    await seed_profiles(svc, "cl", 200, seed=2)
    ctx = await svc.runtime.get("cl")
    vids = [f"demo-2-{i}" for i in range(200)]
    want = {"a": set(vids[:120]), "b": set(vids[80:160]), "c": set(vids[::3])}
    store = AnalyticsStore(svc.clients.raw, svc.scripts, svc.keys)
    analytics = SegmentAnalytics(
        store, ShardReader(svc.clients.raw, svc.keys), 0, BulkReader(svc.clients.raw, svc.keys)
    )
    for slot, (sid, members) in enumerate(want.items()):
        ctx.segments[sid] = static(sid, slot)
        added, unknown = await analytics.write_static(
            "cl", ctx.segments[sid], [*sorted(members), "ghost"], replace=True
        )
        assert (added, unknown) == (len(members), ["ghost"])

    ids = sorted(want)
    assert await store.sizes("cl", [ctx.segments[s].slot for s in ids]) == [
        len(want[s]) for s in ids
    ]
    count, sample, _ = await analytics.query(ctx, {"and": [{"or": ["a", "c"]}, {"not": "b"}]})
    expected = (want["a"] | want["c"]) - want["b"]
    assert count == len(expected) and set(sample) <= expected and len(sample) == 20
    assert await analytics.overlap(ctx, ids) == [[len(want[a] & want[b]) for b in ids] for a in ids]
    await analytics.write_static("cl", ctx.segments["a"], vids[30:50], replace=True)
    assert await analytics.size("cl", ctx.segments["a"]) == 20
    exported = [c async for c in analytics.export_csv(ctx, ctx.segments["a"], ["country"])]
    assert {line.split(b",")[0] for line in b"".join(exported).splitlines()[1:]} == {
        v.encode() for v in vids[30:50]
    }
    rule = {"attr": "device", "op": "eq", "value": "mobile"}
    exact = await analytics.preview(ctx, rule, NOW, 1000, None)
    estimate = await analytics.preview(ctx, rule, NOW, 100, 1)
    low, high = estimate["interval"]
    assert exact["exact"] and low <= exact["count"] <= high
