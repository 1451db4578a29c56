"""Site-wide quotas in Redis (segserver.trust.quotas explains the two kinds): events per
site in a sliding minute, counted by the `limits` library's Redis storage (its
sliding-window counter: two counters per site, where its moving window would keep a
list entry per event), and new visitors as the growth of the shards' ordinal counters
(`seq`, which lua/apply_events.lua increments once per new visitor). Both are read and
written only by the background sync, in batches, never by a request.
"""

from __future__ import annotations

import time
from typing import Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from segserver.storage.client import Clients
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys


def _limits_uri(url: str) -> str:
    """`limits`' URI of a segserver Redis URL (cluster only: single nodes share our pool)."""
    plain = url.replace("rediss+cluster://", "rediss://").replace("redis+cluster://", "redis://")
    return "async+" + plain.replace("redis://", "redis+cluster://", 1)


class SiteQuotaStore:
    def __init__(self, clients: Clients, keys: Keys) -> None:
        self.keys = keys
        self.client = clients.raw
        self.clients = clients
        self.storage: Any = None  # made on first use: nothing connects when built
        self._limiter: SlidingWindowCounterRateLimiter | None = None

    @property
    def limiter(self) -> SlidingWindowCounterRateLimiter:
        if self._limiter is None:
            prefix = f"{self.keys.prefix}:quota"
            if self.clients.cluster:
                self.storage = RedisClusterStorage(
                    _limits_uri(self.clients.url), implementation="redispy", key_prefix=prefix
                )
            else:  # a single node: our own pool, no second client
                self.storage = RedisStorage(
                    "async+redis://", implementation="redispy", key_prefix=prefix,
                    connection_pool=self.clients.raw.connection_pool)  # fmt: skip
            self._limiter = SlidingWindowCounterRateLimiter(self.storage)
        return self._limiter

    async def add_events(self, site: str, count: int, per_minute: int) -> float:
        """Count `count` events of `site`; 0 if it stays within `per_minute`, else the
        epoch second its window frees up (the count is then not added)."""
        item = RateLimitItemPerMinute(per_minute)
        with wrapped("counting site events"):
            if await self.limiter.hit(item, site, "events", cost=count):
                return 0.0
            stats = await self.limiter.get_window_stats(item, site, "events")
        return max(float(stats.reset_time), time.time() + 1)

    async def new_visitor_total(self, site: str) -> int:
        """Visitors ever created on `site` (sum of the shards' ordinal counters)."""
        with wrapped("reading visitor counters"):
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.keys.shards):
                    pipe.get(self.keys.shard_key(site, shard, "seq"))
                raw = await pipe.execute()
        return sum(int(v or 0) for v in raw)

    async def close(self) -> None:
        """Close `limits`' own cluster client (a single node shares our pool)."""
        if self.clients.cluster and self.storage is not None:
            await self.storage.bridge.storage.aclose()
