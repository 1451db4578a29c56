"""Clean-up after profiles expire by TTL (`profile_ttl_days`): Redis drops the profile,
but the visitor's ordinal, its bits in the segment bitmaps, its due entries and its
change-stream entries would stay (counted in sizes, listed in exports). This sweep
walks each shard's ordinals at `per_second` visitors a second (HSCAN; one pipeline of
8-byte reads per chunk) and purges what lost its profile, as erasure does
(lua/purge_expired.lua; exits with cause "expired" for trigger subscribers).

At the default 5 000 visitors a second, one process checks 1 M visitors in ~3.5
minutes; the cost is one GETRANGE per visitor (Redis does ~100 k of them a second).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from segserver.catalogue.runtime import Runtime
from segserver.errors import NotFoundError
from segserver.flows.visitors import segment_slots
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.changes import ChangeStore
from segserver.storage.erasure import ErasureStore

log = logging.getLogger("segserver.sweep")
CHUNK = 500


@dataclass
class ExpiredSweep:
    runtime: Runtime
    erasure: ErasureStore
    changes: ChangeStore
    catalogue: CatalogueStore
    cursors: dict[tuple[str, int], int] = field(default_factory=dict)

    async def run_once(self, now: float, budget: int) -> tuple[int, int]:
        """Check up to `budget` visitors, continuing where the last call stopped;
        (checked, purged)."""
        checked = purged = 0
        for site in await self.runtime.sites.list_ids():
            try:
                ctx = await self.runtime.get(site)
            except NotFoundError:
                continue
            segments = await segment_slots(self.catalogue, ctx)
            emit = bool(await self.changes.subscription_ids(site))
            for shard in range(self.erasure.keys.shards):
                gone: set[str] = set()
                exits: list[str] = []
                while checked < budget:
                    cursor = self.cursors.get((site, shard), 0)
                    nxt, pairs = await self.erasure.ordinals(site, shard, cursor, CHUNK)
                    checked += len(pairs)
                    stale, missing = await self.erasure.stale(site, pairs)
                    n, ids = await self.erasure.purge(site, shard, stale, segments, emit, now)
                    purged += n
                    gone |= missing
                    exits += ids
                    self.cursors[(site, shard)] = nxt
                    if nxt == 0:
                        break
                if gone:
                    await self.erasure.scrub_stream(site, shard, gone, keep=set(exits))
                    await self.erasure.scrub_triggers(site, gone)
                if checked >= budget:
                    return checked, purged
        return checked, purged

    async def run_round(self, clock: Callable[[], float], per_second: int) -> bool:
        """One second's budget (a round of the shared loop, segserver.jobs.loop); the
        loop waits a second between rounds."""
        await self.run_once(clock(), per_second)
        return False
