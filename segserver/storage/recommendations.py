"""What the recommendation strategies read, kept in Redis.

* `rv:<visitor>` list in the visitor's shard (`{<site>.<shard>}`): the last product
  views, most recent first, unique (lua/push_recent.lua); lives as long as a profile.
* Daily sorted sets, site-wide (`{<site>}`, so one script reads a week in one slot):
  `pop:v:<day>` product → views and `pop:b:<day>` product → units bought on that UTC
  day; `pop:s:<segment>:v|b:<day>` the same for the members of one segment. Each
  expires 8 days after its day began, so a week is always there and nothing older.
* Reads: lua/top_products.lua sums a window of days and returns the best products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts

DAY = 86400
KEEP_DAYS = 8  # the 7-day window plus the day in progress at its start


@dataclass
class RecommendationStore:
    client: Client
    scripts: Scripts
    keys: Keys
    recent_length: int = 20  # product views kept per visitor
    ttl_seconds: int = 400 * 86400  # of a visitor's list (0: forever)

    def recent_key(self, site: str, visitor_id: str) -> str:
        shard = self.keys.visitor(site, visitor_id).shard
        return self.keys.shard_key(site, shard, f"rv:{visitor_id}")

    def _daily(self, site: str, segment: str | None, kind: str, day: int) -> str:
        scope = "" if segment is None else f"s:{segment}:"
        return f"{self.keys.prefix}:{{{site}}}:pop:{scope}{kind}:{day}"

    async def push_recent(self, site: str, visitor_id: str, products: Sequence[str]) -> None:
        """Add views (oldest first) to the visitor's recently viewed list."""
        if products:
            await self.scripts.call("push_recent", [self.recent_key(site, visitor_id)],
                                    [self.recent_length, self.ttl_seconds, *products])  # fmt: skip

    async def recent(self, site: str, visitor_id: str, limit: int) -> list[str]:
        with wrapped("reading recently viewed products"):
            raw = await self.client.lrange(self.recent_key(site, visitor_id), 0, limit - 1)
        return [_text(v) for v in raw]

    async def add_popularity(
        self, site: str, counts: Mapping[tuple[str | None, str, int], Mapping[str, float]],
        now: float,
    ) -> None:  # fmt: skip
        """Add to daily sorted sets: (segment or None, "v" | "b", day) → product → amount.
        One pipeline; every key is the site's, so a cluster sends it to one node."""
        if not counts:
            return
        with wrapped("counting product popularity"):
            async with self.client.pipeline(transaction=False) as pipe:
                for (segment, kind, day), products in counts.items():
                    key = self._daily(site, segment, kind, day)
                    for product, amount in products.items():
                        pipe.zincrby(key, amount, product)
                    # relative to `now`: the server's clock may differ from the caller's
                    pipe.expire(key, max(1, int((day + KEEP_DAYS) * DAY - now)))
                await pipe.execute()

    async def top(
        self, site: str, segment: str | None, days: Sequence[int], purchase_weight: float, n: int
    ) -> list[str]:
        """The `n` best products over `days`: views + purchase_weight × units bought,
        descending, ties by product id."""
        scratch = f"{self.keys.prefix}:{{{site}}}:pop:tmp"
        keys = [scratch, *(self._daily(site, segment, "v", d) for d in days),
                *(self._daily(site, segment, "b", d) for d in days)]  # fmt: skip
        raw = await self.scripts.call("top_products", keys, [len(days), repr(purchase_weight), n])
        pairs = [(_text(raw[i]), float(raw[i + 1])) for i in range(0, len(raw), 2)]
        pairs.sort(key=lambda p: (-p[1], p[0].encode()))
        return [p for p, _ in pairs]


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
