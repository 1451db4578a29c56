"""The event path on a real Redis Cluster: one slot per visitor script, shards
spread over nodes, and the script cache lost on every node (NOSCRIPT) recovered."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster

from segserver.config import load_settings
from segserver.profile import codec
from segserver.wiring import Services, build_services

pytestmark = pytest.mark.cluster


@pytest_asyncio.fixture
async def cluster_services(cluster_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(
        redis_url=cluster_url, key_prefix=f"c{uuid.uuid4().hex[:10]}", data_dir=str(tmp_path)
    )
    svc = build_services(settings, clock=lambda: 1_790_000_000.0)
    await svc.scripts.load_all()
    yield svc
    await svc.close()


async def test_events_on_a_cluster(cluster_services: Services) -> None:
    svc = cluster_services
    assert svc.clients.cluster
    site = await svc.sites.create({"id": "cl", "name": "Cluster shop"})
    ctx = await svc.runtime.get(site.id)
    events = [
        {"visitor_id": f"v{i}", "type": "page_view", "event_id": f"e{i}",
         "properties": {"country": "DE" if i % 2 else "FR"}}
        for i in range(200)
    ]  # fmt: skip
    result = await svc.ingestor.ingest(ctx.data, events, 1_790_000_000.0)
    assert result.stored == 200

    nodes = svc.clients.raw
    owners = {
        str(nodes.get_node_from_key(svc.keys.visitor("cl", f"v{i}").profile)) for i in range(200)
    }
    assert len(owners) == 3  # the shards of one site spread over every primary
    await nodes.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    assert not await svc.scripts.loaded()

    replay = [*events[:10], {"visitor_id": "v1", "type": "page_view"}]
    again = await svc.ingestor.ingest(ctx.data, replay, 1_790_000_000.0)
    assert [r.status for r in again.results] == ["duplicate"] * 10 + ["stored"]
    blob = await svc.profiles.get("cl", "v1")
    assert blob is not None
    attrs = codec.to_json(blob, ctx.data.schema.layout, ctx.data.vocab)["attributes"]
    assert attrs["page_views"] == 2
    assert attrs["country"] == "DE"
    assert await svc.profiles.count("cl") == 200
    assert (await svc.sites.get("cl")).name == "Cluster shop"
