"""How segserver builds its Redis clients from a URL (nothing connects here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.connection import SSLConnection

from segserver.config import load_settings
from segserver.storage.client import create_clients


@pytest.mark.parametrize(
    "url", ["rediss://127.0.0.1:1", "rediss+cluster://127.0.0.1:1,127.0.0.1:2"]
)
async def test_tls_urls_give_tls_to_every_client(url: str, tmp_path: Path) -> None:
    """redis-py's connections and the page view's multiplexer alike, with round trips
    counted (the connection class segserver wraps is still the TLS one)."""
    settings = load_settings(redis_url=url, data_dir=str(tmp_path))
    clients = create_clients(settings, on_round_trip=lambda: None)
    try:
        if clients.cluster:
            classes = [clients.raw.nodes_manager.connection_kwargs["connection_class"]]
        else:
            classes = [clients.raw.connection_pool.connection_class]
        assert all(issubclass(cls, SSLConnection) for cls in classes)
        assert clients.fast is not None and clients.fast.options.ssl is not None
    finally:
        await clients.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1", "redis+cluster://127.0.0.1:1"])
async def test_plain_urls_give_no_tls(url: str, tmp_path: Path) -> None:
    settings = load_settings(redis_url=url, data_dir=str(tmp_path))
    clients = create_clients(settings, on_round_trip=lambda: None)
    try:
        assert clients.fast is not None and clients.fast.options.ssl is None
    finally:
        await clients.close()
