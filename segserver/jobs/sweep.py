"""Clean-up after profiles expire by TTL (`profile_ttl_days`): Redis drops the profile,
but the visitor's ordinal, its bits in the segment bitmaps, its due entries and its
change-stream entries would stay (counted in sizes, listed in exports). This sweep
walks each shard's ordinals at `per_second` visitors a second (HSCAN; one pipeline of
8-byte reads per chunk) and purges what lost its profile, as erasure does
(lua/purge_expired.lua; exits with cause "expired" for trigger subscribers).

At the default 5 000 visitors a second, one process checks 1 M visitors in ~3.5
minutes; the cost is one GETRANGE per visitor (Redis does ~100 k of them a second).
After a whole pass over every shard of every site it rests `rest_seconds` (default
300 s) before the next: profiles expire after `profile_ttl_days` of silence, so a
pass every few minutes finds them all within minutes, and a small site is not walked
again and again beside its page views (a 2 000-visitor site was re-read every 0.4 s,
2.6 % of the server's samples under load, before the rest).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from segserver.catalogue.runtime import Runtime, SiteContext
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
    rest_seconds: float = 300.0
    clock: Callable[[], float] = time.monotonic  # real time: the TTLs are Redis' own
    _wrapped: set[tuple[str, int]] = field(default_factory=set)  # shards done this pass
    _rest_until: float = 0.0
    _next: int = 0  # the (site, shard) position the next call starts at

    async def run_once(self, now: float, budget: int) -> tuple[int, int]:
        """Check up to `budget` visitors, continuing where the last call stopped (the
        shard it was in, and its cursor there); (checked, purged)."""
        checked = purged = 0
        shards = self.erasure.keys.shards
        order = [(site, shard) for site in await self.runtime.sites.list_ids()
                 for shard in range(shards)]  # fmt: skip
        if not order:
            return 0, 0
        start = self._next % len(order)
        sites: dict[str, tuple[SiteContext, Sequence[tuple[int, str]], bool] | None] = {}
        step = 0
        while step < len(order) and checked < budget:
            site, shard = order[(start + step) % len(order)]
            if site not in sites:
                try:
                    ctx = await self.runtime.get(site)
                    sites[site] = (ctx, await segment_slots(self.catalogue, ctx),
                                   bool(await self.changes.subscription_ids(site)))  # fmt: skip
                except NotFoundError:
                    sites[site] = None
            known = sites[site]
            if known is None:
                step += 1
                continue
            _, segments, emit = known
            gone: set[str] = set()
            exits: list[str] = []
            wrapped = False
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
                    wrapped = True
                    self._wrapped.add((site, shard))
                    break
            if gone:
                await self.erasure.scrub_stream(site, shard, gone, keep=set(exits))
                await self.erasure.scrub_triggers(site, gone)
            if not wrapped:
                break  # out of budget inside this shard: the next call goes on from here
            step += 1
            if self._wrapped.issuperset(order):
                break  # a whole pass: run_round rests before the next
        self._next = (start + step) % len(order)
        return checked, purged

    async def run_round(self, clock: Callable[[], float], per_second: int) -> bool:
        """One second's budget (a round of the shared loop, segserver.jobs.loop; it waits
        a second between rounds), or nothing while resting after a whole pass."""
        if self.clock() < self._rest_until:
            return False
        await self.run_once(clock(), per_second)
        shards = {(site, shard) for site in await self.runtime.sites.list_ids()
                  for shard in range(self.erasure.keys.shards)}  # fmt: skip
        if shards <= self._wrapped:  # every shard walked to its end: a whole pass
            self._wrapped.clear()
            self._rest_until = self.clock() + self.rest_seconds
        return False
