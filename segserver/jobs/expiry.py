"""Exact expiry: re-evaluate a visitor exactly when one of its time conditions may
flip ("recent buyers" ends 30 days after the last order), with no new event.

Each commit stores the kernel's `next_change` in the shard's `due` set; a scheduler
in every server process claims due visitors atomically (lua/claim_due.lua), so each
is processed once, and takes over claims whose lease ran out (a crashed process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from segserver.catalogue.runtime import Runtime, SiteContext
from segserver.errors import NotFoundError, SegserverError
from segserver.membership import commit, evaluate_visitor
from segserver.storage.keys import Keys
from segserver.storage.membership import DueStore, MembershipStore

log = logging.getLogger("segserver.expiry")


class ExpiryScheduler:
    def __init__(
        self, runtime: Runtime, due: DueStore, membership: MembershipStore, keys: Keys,
        site_ids: Callable[[], Sequence[str]] | None = None, *, lease: float = 30.0,
        batch: int = 500,
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

    async def run_once(self, now: float) -> int:
        """Process every visitor due at `now` on every site and shard; how many."""
        done = 0
        for site_id in await self.sites():
            try:
                ctx = await self.runtime.get(site_id)
            except NotFoundError:
                continue
            for shard in range(self.keys.shards):
                while True:
                    claimed = await self.due.claim(site_id, shard, now, self.lease, self.batch)
                    if not claimed:
                        break
                    done += await self._process(ctx, shard, claimed, now)
                    if len(claimed) < self.batch:
                        break
        return done

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

    async def run_forever(
        self, clock: Callable[[], float], interval: float, stop: asyncio.Event
    ) -> None:
        """The background loop of `segserver serve`, until `stop` is set."""
        while not stop.is_set():
            try:
                await self.run_once(clock())
            except SegserverError as exc:
                log.warning("expiry scheduler: %s", exc.message)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py may swallow a cancellation that lands inside a command
                raise asyncio.CancelledError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
