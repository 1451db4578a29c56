"""The background half of the site-wide quotas (segserver.trust.quotas): every
`quota_sync_seconds`, add this process' event counts to Redis and read each active
site's new-visitor growth; mark a site over a quota as blocked until its window
frees up. One batch per site and interval: never a round trip per request."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from segserver.storage.quotas import SiteQuotaStore
from segserver.trust.quotas import Quotas

log = logging.getLogger("segserver.trust.quotas")
MINUTE = 60.0


class QuotaSync:
    def __init__(self, quotas: Quotas, store: SiteQuotaStore) -> None:
        self.quotas = quotas
        self.store = store
        self.samples: dict[str, deque[tuple[float, int]]] = {}

    async def run_once(self, now: float) -> None:
        q = self.quotas
        if q.events_per_minute:
            for site, count in q.take_pending().items():
                until = await self.store.add_events(site, count, q.events_per_minute)
                if until:
                    q.block(site, until)
        if q.new_visitors_per_minute:
            for site in list(q.sites):
                total = await self.store.new_visitor_total(site)
                until = self.new_visitors_over(site, total, now)
                if until:
                    q.block(site, until)

    def new_visitors_over(self, site: str, total: int, now: float) -> float:
        """Record `total` (visitors ever created) at `now`; 0 if the growth in the last
        minute is within the quota, else when the oldest growth over it leaves the
        window."""
        samples = self.samples.setdefault(site, deque())
        samples.append((now, total))
        while len(samples) > 1 and samples[1][0] <= now - MINUTE:
            samples.popleft()
        limit = self.quotas.new_visitors_per_minute
        over = [t for t, seen in samples if total - seen > limit]
        return over[-1] + MINUTE if over else 0.0

    async def run_round(self, clock: Callable[[], float]) -> bool:
        """A round of the shared loop (segserver.jobs.loop), every `quota_sync_seconds`."""
        await self.run_once(clock())
        return False
