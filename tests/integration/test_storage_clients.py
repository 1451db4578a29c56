"""The Redis clients segserver builds (storage/client.py) against a real redis-server:
a connection whose transport was torn down under a write (redis-py raises a plain
AttributeError there) fails as redis' ConnectionError, the error redis-py's retries
know (tests/cluster/test_cluster_clients.py: the cluster client then runs the command
again on a fresh connection)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from segserver.config import Settings
from segserver.storage.client import create_clients
from tests.conftest import tear_down


async def test_a_write_on_a_torn_down_connection_fails_as_a_connection_error(
    settings: Settings,
) -> None:
    """A Redis error (the one redis-py's retry lists name), never a foreign
    AttributeError; the connection is closed and the next command opens a new one."""
    trips: list[int] = []
    clients = create_clients(settings, on_round_trip=lambda: trips.append(1))
    try:
        pool = clients.raw.connection_pool
        connection = await pool.get_connection()
        await connection.connect()
        tear_down(connection)
        with pytest.raises(RedisConnectionError, match="closed under a write"):
            await connection.send_command("PING")
        assert not connection.is_connected
        await pool.release(connection)
        assert await clients.raw.ping() is True
        assert len(trips) >= 2  # each send still counted as a round trip
    finally:
        await clients.close()
