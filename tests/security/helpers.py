"""Shared helpers of the security tests (the real app through aiohttp's test client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from segserver.config import Settings
from segserver.http import create_app
from tests.conftest import Clock, admin_headers

Client = TestClient[Any, Any]


@asynccontextmanager
async def app_with(settings: Settings, clock: Clock, **changes: Any) -> AsyncIterator[Client]:
    """The real app with some settings changed (background loops as in production)."""
    custom = settings.model_copy(update=changes)
    async with TestClient(TestServer(create_app(custom, clock=clock))) as client:
        yield client


async def make_site(client: Client, site_id: str = "shop", **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/admin/sites", headers=admin_headers(),
                             json={"id": site_id, "origins": ["*"], **body})  # fmt: skip
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def admin_post(client: Client, path: str, body: Any, status: int = 201) -> Any:
    resp = await client.post(path, headers=admin_headers(), json=body)
    assert resp.status == status, await resp.text()
    return await resp.json()


def site_key(site: dict[str, Any]) -> dict[str, str]:
    return {"X-Segserver-Key": site["site_key"]}


def server_key(site: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {site['server_key']}"}
