"""Redis clients: single node (redis://, rediss://, unix://) or Redis Cluster
(redis+cluster://, rediss+cluster://), with pools that wait for a free connection
instead of raising (redis-py's default pool raises past 100 connections).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from segserver.config import Settings
from segserver.errors import ConfigError

# redis.asyncio.Redis | RedisCluster; typed Any because redis-om's dependency on
# types-redis (stubs of redis 4) shadows redis 8's own annotations (see pyproject).
Client: TypeAlias = Any


@dataclass
class Clients:
    """`raw` answers bytes (profiles); `text` decodes to str (catalogue, redis-om)."""

    raw: Client
    text: Client
    cluster: bool
    url: str

    async def close(self) -> None:
        await self.raw.aclose()
        await self.text.aclose()


def _single(url: str, decode: bool, settings: Settings) -> aioredis.Redis:
    timeout = settings.redis_timeout_ms / 1000
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


def _cluster(url: str, decode: bool, settings: Settings) -> RedisCluster:
    timeout = settings.redis_timeout_ms / 1000
    plain = url.replace("+cluster", "", 1)
    # RedisCluster raises MaxConnectionsError when a node's pool is exhausted rather
    # than waiting; the cap is generous and callers bound their own concurrency.
    return RedisCluster.from_url(
        plain,
        decode_responses=decode,
        max_connections=max(settings.redis_max_connections, 256),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def create_clients(settings: Settings, url: str | None = None) -> Clients:
    """Build the clients for `url` (default: settings.redis_url). Nothing connects yet."""
    url = url or settings.redis_url
    if not url:
        raise ConfigError("redis_url: no Redis URL (the embedded Redis was not started)")
    cluster = "+cluster://" in url
    make: Any = _cluster if cluster else _single
    try:
        return Clients(make(url, False, settings), make(url, True, settings), cluster, url)
    except ValueError as exc:
        raise ConfigError(f"redis_url: {exc}") from exc


async def ping(client: Client, within: float = 1.0) -> bool:
    try:
        async with asyncio.timeout(within):
            return bool(await client.ping())
    except (TimeoutError, aioredis.RedisError, OSError):
        return False
