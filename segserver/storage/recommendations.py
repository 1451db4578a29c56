"""What the recommendation strategies read, kept in Redis (written by
lua/finish_visitor.lua, storage.finish, with the rest of a visitor's page view).

* `rv:<visitor>` list in the visitor's shard (`{<site>.<shard>}`): the last product
  views, most recent first, unique; lives as long as a profile.
* Daily sorted sets per shard (`Keys.popularity`): `pop:v:<day>` product → views and
  `pop:b:<day>` product → units bought on that UTC day by the shard's visitors;
  `pop:s:<segment>:v|b:<day>` the same for the members of one segment. Kept per shard
  so a page view's writes stay in its visitor's slot; each expires 8 days after its
  day began, so a week is always there and nothing older.
* Reads: lua/top_products.lua sums a window of days in one shard; the shards' totals
  are added here. Rankings are cached per process (recommend.Recommender).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
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

    async def recent(self, site: str, visitor_id: str, limit: int) -> list[str]:
        with wrapped("reading recently viewed products"):
            raw = await self.client.lrange(self.keys.visitor(site, visitor_id).recent, 0, limit - 1)
        return [_text(v) for v in raw]

    async def top(
        self, site: str, segment: str | None, days: Sequence[int], purchase_weight: float, n: int
    ) -> list[str]:
        """The `n` best products over `days`: views + purchase_weight × units bought,
        summed over every shard, descending, ties by product id (bytewise)."""

        async def shard_totals(shard: int) -> list[Any]:
            k = self.keys
            keys = [k.shard_key(site, shard, "pop:tmp"),
                    *(k.popularity(site, shard, segment, "v", d) for d in days),
                    *(k.popularity(site, shard, segment, "b", d) for d in days)]  # fmt: skip
            # every product of the shard: a shard's top n need not be the site's
            raw: list[Any] = await self.scripts.call(
                "top_products", keys, [len(days), repr(purchase_weight)]
            )
            return raw

        totals: dict[str, float] = defaultdict(float)
        for raw in await asyncio.gather(*(shard_totals(s) for s in range(self.keys.shards))):
            for i in range(0, len(raw), 2):
                totals[_text(raw[i])] += float(raw[i + 1])
        ranked = sorted(totals.items(), key=lambda p: (-p[1], p[0].encode()))
        return [p for p, _ in ranked[:n]]


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
