"""Size history: a snapshot of every active segment's size once per interval.

Every server process runs the loop; per site and interval exactly one of them takes
the snapshot (SET NX on the interval's key, see `AnalyticsStore.claim_snapshot`).
Points older than the retention (90 days by default) are dropped as new ones come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from segserver.catalogue.runtime import Runtime
from segserver.errors import NotFoundError
from segserver.storage.analytics import AnalyticsStore

DAY = 86400.0


class HistorySnapshotter:
    def __init__(
        self, runtime: Runtime, store: AnalyticsStore, interval: float,
        retention_days: float = 90, site_ids: Callable[[], Sequence[str]] | None = None,
    ) -> None:  # fmt: skip
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.runtime = runtime
        self.store = store
        self.interval = interval
        self.retention = retention_days * DAY
        self._site_ids = site_ids

    async def sites(self) -> list[str]:
        if self._site_ids is not None:
            return list(self._site_ids())
        return await self.runtime.sites.list_ids()

    async def run_once(self, now: float) -> int:
        """Snapshot every site whose snapshot of this interval nobody took yet; how many."""
        index = int(now // self.interval)
        taken = 0
        for site_id in await self.sites():
            if not await self.store.claim_snapshot(site_id, index, int(self.interval * 2) + 1):
                continue
            try:
                segments = await self.runtime.segments.all(site_id)
            except NotFoundError:
                continue
            active = [s for s in segments if s.status == "active"]
            sizes = await self.store.sizes(site_id, [s.slot for s in active])
            await self.store.add_history(
                site_id, {s.slot: n for s, n in zip(active, sizes, strict=True)}, now,
                now - self.retention,
            )  # fmt: skip
            taken += 1
        return taken

    async def run_round(self, clock: Callable[[], float]) -> bool:
        """One round of the supervised loop (segserver.jobs.loop); never busy."""
        await self.run_once(clock())
        return False

    def pause(self, clock: Callable[[], float]) -> float:
        """Seconds from `clock()` to just past the next interval boundary."""
        return self.interval - clock() % self.interval + 0.01
