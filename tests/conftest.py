"""Shared fixtures: a private redis-server for the session (unix socket in a temp
dir, never the machine's 6379), a fresh key prefix per test, the real services and
the real aiohttp app through aiohttp's test client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from segserver.config import Settings, load_settings
from segserver.http import create_app
from segserver.storage.embedded import EmbeddedRedis
from segserver.wiring import Services, build_services

ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"


class Clock:
    """An injected clock (epoch seconds): tests move time, never sleep."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory of every test app: only the Numba cache lives there, kept
    across runs (gitignored) so the kernels compile once, not every session."""
    path = Path(__file__).resolve().parents[1] / ".segserver" / "test-data"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(redis_url: str, data_dir: Path) -> Settings:
    return load_settings(
        redis_url=redis_url,
        key_prefix=f"t{uuid.uuid4().hex[:12]}",
        admin_token=ADMIN_TOKEN,
        data_dir=str(data_dir),
        shards=8,
        # page views here are about behaviour, not the time budget (tests/http/
        # test_degraded.py sets its own): a busy 2-core CI machine must not turn
        # them into degraded answers
        redis_budget_ms=2000,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def services(settings: Settings, clock: Clock) -> AsyncIterator[Services]:
    svc = build_services(settings, clock=clock)
    await svc.scripts.load_all()
    yield svc
    await svc.close()


@pytest_asyncio.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def snapshot(redis_url: str, prefix: str) -> dict[bytes, Any]:
    """Every key under `prefix` with its DUMP and TTL presence: for 'nothing changed'."""
    with redis.Redis.from_url(redis_url) as client:
        keys = sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
        return {k: (client.dump(k), client.ttl(k) > 0) for k in keys}


@pytest_asyncio.fixture
async def client(settings: Settings, clock: Clock) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings, clock=clock)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def server_headers(site: dict[str, Any]) -> dict[str, str]:
    """The site's secret server key (a shop back end: every event type)."""
    return {"Authorization": f"Bearer {site['server_key']}"}


@pytest_asyncio.fixture
async def site(client: TestClient[Any, Any]) -> dict[str, Any]:
    """A site created through the admin API, with a custom attribute and event (and
    without the prebuilt segments, so tests control every segment)."""
    resp = await client.post(
        "/v1/admin/sites",
        headers=admin_headers(),
        json={
            "id": "shop",
            "name": "Shop",
            "origins": ["https://shop.example"],
            "prebuilt": False,
            "schema": {
                "attributes": [
                    {"name": "points", "kind": "number"},
                    {"name": "vip", "kind": "flag"},
                    {"name": "interests", "kind": "tags"},
                ],
                "events": [{"name": "wishlist_add", "window": True}],
            },
        },
    )
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


class TornWriter:
    """A redis-py connection's stream writer whose transport was torn down while the
    connection still looked connected (a concurrent disconnect, a peer reset): the
    write raises what redis-py 8.1 raises then; anything else reaches the real writer."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def writelines(self, data: Any) -> None:
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


def tear_down(connection: Any) -> None:
    """Make `connection`'s next write fail as a torn-down transport's does."""
    assert connection.is_connected
    connection._writer = TornWriter(connection._writer)
