"""Redis clients: single node (redis://, rediss://, unix://) or Redis Cluster
(redis+cluster://, rediss+cluster://, several seed nodes allowed:
`redis+cluster://h1:7000,h2:7001`), with pools that wait for a free connection instead
of raising (redis-py's default pool raises past 100 connections); and the page view's
multiplexed client (storage.multiplex) on the same servers.

Every round trip is counted (`on_round_trip`): redis-py's by its connections' sends (a
pipeline is one), the multiplexer's per command. `segserver bench http` reports the
count per request from /metrics, so "two round trips per page view" is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import RedisSSLContext, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from segserver.config import Settings
from segserver.errors import ConfigError, StorageError
from segserver.storage.multiplex import Address, Multiplexer, NodeOptions, slot_of

# redis.asyncio.Redis | RedisCluster; typed Any because redis-om's dependency on
# types-redis (stubs of redis 4) shadows redis 8's own annotations (see pyproject).
Client: TypeAlias = Any
Tick = Callable[[], None]


@dataclass
class Clients:
    """`raw` answers bytes (profiles); `text` decodes to str (catalogue, redis-om);
    `fast` runs the page view's scripts (None: redis-py does, setting
    `redis_multiplex = false`)."""

    raw: Client
    text: Client
    cluster: bool
    url: str
    fast: Multiplexer | None = None
    _refreshing: asyncio.Task[None] | None = None
    _refreshed_at: float = 0.0

    def refresh_soon(self, every: float = 0.5) -> None:
        """A cluster: renew the slot map in the background (at most once per `every`
        seconds), after a primary stopped answering. redis-py renews it only when one of
        its own commands fails; page views go through the multiplexer, so without this
        their slots would stay on the dead primary after its replica took over."""
        if not self.cluster or (self._refreshing is not None and not self._refreshing.done()):
            return
        now = time.monotonic()
        if now - self._refreshed_at < every:
            return
        self._refreshed_at = now
        self._refreshing = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        for client in (self.raw, self.text):  # each keeps its own slot map
            try:
                await client.nodes_manager.initialize()
            except Exception:  # every known node unreachable: the next failure asks again
                return

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        if self.fast is not None:
            self.fast.close()
        await self.raw.aclose()
        await self.text.aclose()


def _connection_class(cls: type[Any], tick: Tick | None) -> type[Any]:
    """`cls` (a redis-py connection class) whose writes on a torn-down transport fail as
    redis' ConnectionError, and counting each send (one per round trip) when `tick`.

    redis-py 8.1 raises plain AttributeError / TypeError (`'NoneType' object has no
    attribute 'writelines'`) when a connection's transport is gone under a write: reset
    by the peer (redis-py issue #4287), or disconnected by another task while this one
    was opening it (seen in CI: a cluster's first admin write answered 503). Neither is
    in redis-py's retry lists; as ConnectionError the cluster client runs the command
    again on a fresh connection. Nothing of it was sent: the write itself failed."""

    class Guarded(cls):  # type: ignore[misc]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if tick is not None:
                tick()
            try:
                await super().send_packed_command(command, check_health)
            except (AttributeError, TypeError) as exc:
                if "'NoneType'" not in str(exc):  # not a torn-down transport: a bug, shown
                    raise
                with contextlib.suppress(Exception):  # closing a torn-down transport raises too
                    await self.disconnect(nowait=True)
                raise RedisConnectionError(f"connection closed under a write ({exc})") from exc

    return Guarded


def _single(url: str, decode: bool, settings: Settings, tick: Tick | None) -> aioredis.Redis:
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
    pool.connection_class = _connection_class(pool.connection_class, tick)
    return aioredis.Redis.from_pool(pool)


def _seeds(url: str) -> tuple[str, list[ClusterNode]]:
    """A cluster URL without `+cluster`, and its seed nodes (comma-separated hosts)."""
    plain = url.replace("+cluster", "", 1)
    parts = urlsplit(plain)
    hosts = parts.netloc.rpartition("@")[2]
    seeds = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"redis_url: {item!r} is not host:port (cluster seed node)")
        seeds.append(ClusterNode(host.strip("[]"), int(port)))
    first = plain.replace(hosts, hosts.split(",")[0], 1)
    return first, seeds


def _cluster(url: str, decode: bool, settings: Settings, tick: Tick | None) -> RedisCluster:
    timeout = settings.redis_timeout_ms / 1000
    first, seeds = _seeds(url)
    # RedisCluster raises MaxConnectionsError when a node's pool is exhausted rather
    # than waiting; the cap is generous and callers bound their own concurrency.
    client = RedisCluster.from_url(
        first,
        startup_nodes=seeds,
        decode_responses=decode,
        max_connections=max(settings.redis_max_connections, 256),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    kwargs = client.nodes_manager.connection_kwargs
    kwargs["connection_class"] = _connection_class(kwargs["connection_class"], tick)
    return client


def create_clients(
    settings: Settings, url: str | None = None, on_round_trip: Tick | None = None
) -> Clients:
    """Build the clients for `url` (default: settings.redis_url). Nothing connects yet."""
    url = url or settings.redis_url
    if not url:
        raise ConfigError("redis_url: no Redis URL (the embedded Redis was not started)")
    cluster = "+cluster://" in url
    make: Any = _cluster if cluster else _single
    try:
        raw = make(url, False, settings, on_round_trip)
        clients = Clients(raw, make(url, True, settings, None), cluster, url)
    except ValueError as exc:
        raise ConfigError(f"redis_url: {exc}") from exc
    if settings.redis_multiplex:
        clients.fast = _multiplexer(raw, cluster, settings, on_round_trip)
        clients.fast.on_unreachable = clients.refresh_soon
    return clients


def _multiplexer(raw: Client, cluster: bool, settings: Settings, tick: Tick | None) -> Multiplexer:
    timeout = settings.redis_timeout_ms / 1000
    if cluster:
        manager = raw.nodes_manager
        kw = manager.connection_kwargs

        def route(key: bytes) -> Address:
            try:
                node = manager.get_node_from_slot(slot_of(key))
            except Exception as exc:  # no slot map yet, or a slot not covered now
                raise StorageError(f"no Redis Cluster node for this key: {exc}") from exc
            return (node.host, int(node.port))

        tls = issubclass(kw["connection_class"], SSLConnection)
        options = NodeOptions(kw.get("username"), kw.get("password"), 0,
                              _ssl(kw) if tls else None, timeout)  # fmt: skip
        return Multiplexer(route, options, refresh=manager.initialize, on_send=tick)
    pool = raw.connection_pool
    kw = pool.connection_kwargs
    address: Address
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        address = str(kw["path"])
    else:
        address = (str(kw.get("host", "localhost")), int(kw.get("port", 6379)))
    ssl_context = _ssl(kw) if issubclass(pool.connection_class, SSLConnection) else None
    options = NodeOptions(kw.get("username"), kw.get("password"), int(kw.get("db") or 0),
                          ssl_context, timeout)  # fmt: skip
    return Multiplexer(lambda _: address, options, on_send=tick)


def _ssl(kw: dict[str, Any]) -> Any:
    """The SSL context redis-py would use for these connection settings."""
    return RedisSSLContext(
        keyfile=kw.get("ssl_keyfile"), certfile=kw.get("ssl_certfile"),
        cert_reqs=kw.get("ssl_cert_reqs", "required"), ca_certs=kw.get("ssl_ca_certs"),
        ca_data=kw.get("ssl_ca_data"), check_hostname=kw.get("ssl_check_hostname", False),
    ).get()  # fmt: skip


@dataclass(frozen=True)
class Reachability:
    """What /readyz tells about Redis: the primaries (`host:port`, or the one node's
    address) that answered a PING within the probe's time, those that did not, and
    whether every script is loaded on those that answered."""

    answering: list[str]
    unreachable: list[str]
    scripts: bool

    @property
    def state(self) -> str:
        """ "ok" (every node), "partial" (some: the shards of the others fail over or
        are out) or "down" (none)."""
        if not self.answering:
            return "down"
        return "partial" if self.unreachable else "ok"


async def probe(clients: Clients, sources: Sequence[str], shas: Sequence[str],
                within: float = 0.5) -> Reachability:  # fmt: skip
    """PING every primary (concurrently, each in its own time-out and tried twice, so
    a dead node costs the probe 2 × `within` at most), check the scripts on those that answered and
    load the missing ones there (a restarted or promoted node has none). On a cluster,
    an unreachable primary also asks for a fresh slot map (in the background)."""
    if not clients.cluster:
        client = clients.raw
        kw = client.connection_pool.connection_kwargs
        name = str(kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}")
        ok = await _node_ready(client.execute_command, sources, shas, within)
        return Reachability([name] if ok is not None else [], [] if ok is not None else [name],
                            bool(ok))  # fmt: skip
    manager = clients.raw.nodes_manager
    if not manager.nodes_cache:  # nothing connected yet (every seed was out at start)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(within):
                await clients.raw.initialize()
    nodes = list(manager.get_nodes_by_server_type("primary"))
    results = await asyncio.gather(
        *(_node_ready(n.execute_command, sources, shas, within) for n in nodes))  # fmt: skip
    # A node that failed gets a second try (through the current map's node of that
    # name): a slot-map refresh meanwhile disconnects the nodes it replaced, and one
    # lost PING must not name a healthy primary.
    again = [i for i, r in enumerate(results) if r is None]
    retried = await asyncio.gather(*(
        _node_ready(manager.nodes_cache.get(nodes[i].name, nodes[i]).execute_command, sources,
                    shas, within) for i in again))  # fmt: skip
    for i, r in zip(again, retried, strict=True):
        results[i] = r
    answering = [n.name for n, r in zip(nodes, results, strict=True) if r is not None]
    unreachable = [n.name for n, r in zip(nodes, results, strict=True) if r is None]
    if unreachable or not nodes:
        clients.refresh_soon()
    return Reachability(sorted(answering), sorted(unreachable),
                        bool(answering) and all(r for r in results if r is not None))  # fmt: skip


async def _node_ready(execute: Callable[..., Any], sources: Sequence[str],
                      shas: Sequence[str], within: float) -> bool | None:  # fmt: skip
    """None: the node did not answer; else whether its scripts are loaded (after
    loading the missing ones)."""
    try:
        async with asyncio.timeout(within):
            await execute("PING")
            exists = await execute("SCRIPT EXISTS", *shas)
            missing = [src for src, ok in zip(sources, exists, strict=True) if not ok]
            for src in missing:
                await execute("SCRIPT LOAD", src)
            return True
    except (TimeoutError, aioredis.RedisError, OSError):
        return None
    except Exception:  # redis-py raises odd things at a node that just died (storage/errors)
        return None


async def ping(client: Client, within: float = 1.0) -> bool:
    try:
        async with asyncio.timeout(within):
            return bool(await client.ping())
    except (TimeoutError, aioredis.RedisError, OSError):
        return False
