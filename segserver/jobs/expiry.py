"""Exact expiry: re-evaluate a visitor exactly when one of its time conditions may
flip ("recent buyers" ends 30 days after the last order), with no new event.

Each commit stores the kernel's `next_change` in the shard's `due` set; a scheduler
in every server process claims due visitors atomically (lua/claim_due.lua), so each
is processed once, and takes over claims whose lease ran out (a crashed process, or
a claim whose answer was lost in a Redis outage). It runs as a supervised loop
(segserver.jobs.loop), in small batches with the event loop's other work between
them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from segserver.catalogue.runtime import Runtime, SiteContext
from segserver.errors import NotFoundError, StorageError
from segserver.membership import commit, evaluate_visitor
from segserver.storage.keys import Keys
from segserver.storage.membership import DueStore, MembershipStore

# Visitors claimed, evaluated and committed per batch: the batch's CPU (evaluation
# ~15 µs and packing the commit ~17 µs per visitor) runs on the event loop between
# two Redis calls. `segserver bench loops`, 20,000 due visitors, 2 runs on a busy
# 2-core machine: batch 500 (before) made a callback arriving meanwhile wait p99
# 19-69 ms (max 30-83 ms) at 4,500-12,000 visitors/s; batch 16 p99 0.7-1.1 ms (max
# 4.4-4.9 ms) at 8,100-8,700/s; batch 32 p99 2.2 ms at 10,000-11,000/s.
BATCH = 16
# Visitors per round of the supervised loop: a backlog is worked off in rounds of this
# many, each one a successful round for /readyz, with the loop's yield between them.
ROUND = 1024
HAND_BACK_TRIES = 5


class ExpiryScheduler:
    def __init__(
        self, runtime: Runtime, due: DueStore, membership: MembershipStore, keys: Keys,
        site_ids: Callable[[], Sequence[str]] | None = None, *, lease: float = 30.0,
        batch: int = BATCH,
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.due = due
        self.membership = membership
        self.keys = keys
        self.lease = lease
        self.batch = batch
        self._site_ids = site_ids

    async def sites(self) -> list[str]:
        if self._site_ids is not None:
            return list(self._site_ids())
        return await self.runtime.sites.list_ids()

    async def run_once(self, now: float, limit: int | None = None) -> int:
        """Process the visitors due at `now` on every site and shard, at most `limit`
        of them (all by default); how many. Between batches the event loop runs
        whatever else waits (page views)."""
        done = 0
        for site_id in await self.sites():
            try:
                ctx = await self.runtime.get(site_id)
            except NotFoundError:
                continue
            for shard in range(self.keys.shards):
                while limit is None or done < limit:
                    want = self.batch if limit is None else min(self.batch, limit - done)
                    claimed = await self.due.claim(site_id, shard, now, self.lease, want)
                    if not claimed:
                        break
                    try:
                        done += await self._process(ctx, shard, claimed, now)
                    except StorageError:
                        # a connection broken by an outage: the next round takes these
                        # visitors again (else they wait for the lease, 30 s by default)
                        await self._hand_back(site_id, shard, claimed, now)
                        raise
                    await asyncio.sleep(0)
                    if len(claimed) < want:
                        break
        return done

    async def _hand_back(self, site_id: str, shard: int, claimed: list[str], now: float) -> None:
        """Hand claims back, trying a few times: after a Redis restart each stale pooled
        connection fails its first command once (the hand-back is idempotent)."""
        for _ in range(HAND_BACK_TRIES):
            with contextlib.suppress(StorageError):
                await self.due.hand_back(site_id, shard, claimed, now)
                return

    async def run_round(self, clock: Callable[[], float]) -> bool:
        """One round of the supervised loop (segserver.jobs.loop): up to ROUND due
        visitors at `clock()`; True when more may be waiting."""
        return await self.run_once(clock(), ROUND) >= ROUND

    async def _process(
        self, ctx: SiteContext, shard: int, visitor_ids: list[str], now: float
    ) -> int:
        read = await self.due.read_profiles(ctx.site.id, visitor_ids)
        items, gone = [], []
        for vid, blob in zip(visitor_ids, read, strict=True):
            item = None if blob is None else evaluate_visitor(ctx, vid, blob, now)
            if item is None:
                gone.append(vid)
            else:
                items.append(item)
        await self.due.release(ctx.site.id, shard, gone)
        return await commit(self.membership, self.keys, ctx, items, "expiry", now)
