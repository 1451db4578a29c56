"""The cluster client segserver builds, on a real local Redis Cluster: a write on a
connection whose transport was torn down (what a slot-map refresh closing a
connection another task is opening leaves, or a peer reset) is run again on a fresh
connection, instead of failing the request with redis-py's plain AttributeError."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from segserver.config import load_settings
from segserver.storage.client import create_clients
from tests.conftest import tear_down

pytestmark = pytest.mark.cluster


async def test_a_write_on_a_torn_down_connection_is_run_again(
    cluster_url: str, tmp_path: Path
) -> None:
    prefix = f"k{uuid.uuid4().hex[:10]}"
    settings = load_settings(redis_url=cluster_url, key_prefix=prefix, data_dir=str(tmp_path))
    clients = create_clients(settings)
    keys = [f"{prefix}:{i}" for i in range(8)]  # spread over the primaries
    try:
        await clients.text.initialize()
        for node in clients.text.get_primaries():
            connection = node.acquire_connection()
            await connection.connect()
            tear_down(connection)  # still looks connected; its next write fails
            node.release(connection)
        for key in keys:
            assert await clients.text.set(key, "stored") is True
        assert [await clients.text.get(key) for key in keys] == ["stored"] * len(keys)
        assert await clients.text.exists(*keys) == len(keys)  # a pipeline per slot
    finally:
        await clients.text.delete(*keys)
        await clients.close()
