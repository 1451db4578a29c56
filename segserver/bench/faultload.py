"""The fault suite's load: page views and event batches from concurrent HTTP clients,
every event with an id, every outcome counted, and a reconciliation afterwards.

Used by `tests/faults` (short runs) and `segserver bench faults` (longer ones). Each
request is classified by the moment it was sent (before, during or after a fault) and
by whether its visitor's keys live on a healthy Redis node (`affected(visitor)` tells
which visitors the fault reaches; on a single Redis, all of them).

Acknowledged means the server answered `stored` or `duplicate` for the event: it must
be in the visitor's profile. Anything else (`pending`, `not_stored`, a 503, no answer)
is retried with the same event id after the fault until acknowledged; the profile's
`page_views` must then equal the number of distinct ids sent for the visitor
(fewer: lost; more: counted twice).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

ACKED = frozenset({"stored", "duplicate"})
PHASES = ("before", "during", "after")


@dataclass
class Tally:
    """Outcomes of one load run. `outcomes[(phase, group, kind)]` counts requests by
    the phase they were sent in;
    group is "healthy" or "affected", kind one of ok, degraded, 503, 5xx (other than
    503), 4xx, no_answer."""

    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    sent: dict[str, set[str]] = field(default_factory=dict)  # visitor → event ids sent
    acked: dict[str, set[str]] = field(default_factory=dict)  # visitor → ids acknowledged
    unacked: dict[str, set[str]] = field(default_factory=dict)  # visitor → ids to retry
    bodies_5xx: list[str] = field(default_factory=list)
    #: (monotonic time the request was sent, group, kind) of every request
    timeline: list[tuple[float, str, str]] = field(default_factory=list)

    def count(self, phase: str | None = None, group: str | None = None,
              kind: str | None = None) -> int:  # fmt: skip
        return sum(n for (p, g, k), n in self.outcomes.items()
                   if (phase is None or p == phase) and (group is None or g == group)
                   and (kind is None or k == kind))  # fmt: skip

    @property
    def acknowledged(self) -> int:
        return sum(len(ids) for ids in self.acked.values())


@dataclass
class Load:
    """Concurrent page views (`/v1/context`, one page_view event each) and event
    batches (`/v1/events`, 3 page_view events of one visitor) for `visitors`."""

    base: str
    site_key: str
    visitors: list[str]
    affected: Callable[[str], bool] = lambda _: True
    concurrency: int = 16
    placement: str | None = None
    timeout: float = 5.0
    tally: Tally = field(default_factory=Tally)
    phase: str = "before"
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self, until: asyncio.Event) -> Tally:
        """Send requests until `until` is set; the tally."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            order = itertools.cycle(self.visitors)

            async def worker(n: int) -> None:
                i = n
                while not until.is_set():
                    visitor = next(order)
                    if i % 2:
                        await self.page_view(http, visitor)
                    else:
                        await self.events(http, visitor, 3)
                    i += 1

            await asyncio.gather(*(worker(n) for n in range(self.concurrency)))
        return self.tally

    def _group(self, visitor: str) -> str:
        return "affected" if self.affected(visitor) else "healthy"

    def _new_ids(self, visitor: str, n: int) -> list[str]:
        ids = [f"{visitor}-e{next(self._ids)}" for _ in range(n)]
        self.tally.sent.setdefault(visitor, set()).update(ids)
        return ids

    def _record(self, visitor: str, ids: list[str], results: list[dict[str, Any]] | None) -> None:
        statuses = [r.get("status") for r in results] if results else [None] * len(ids)
        for event_id, status in zip(ids, statuses, strict=False):
            if status in ACKED:
                self.tally.acked.setdefault(visitor, set()).add(event_id)
                self.tally.unacked.get(visitor, set()).discard(event_id)
            else:
                self.tally.unacked.setdefault(visitor, set()).add(event_id)

    async def _post(self, http: aiohttp.ClientSession, path: str,
                    body: Any) -> tuple[int, Any]:  # fmt: skip
        try:
            async with http.post(self.base + path, json=body,
                                 headers={"X-Segserver-Key": self.site_key}) as resp:  # fmt: skip
                text = await resp.text()
                try:
                    return resp.status, await resp.json(content_type=None)
                except ValueError:
                    return resp.status, text
        except (aiohttp.ClientError, TimeoutError):
            return 0, None

    def _count(self, phase: str, sent: float, visitor: str, status: int, body: Any,
               degraded: bool) -> None:  # fmt: skip
        group = self._group(visitor)
        if status == 0:
            kind = "no_answer"
        elif status == 503:
            kind = "503"
        elif status >= 500:
            kind = "5xx"
            self.tally.bodies_5xx.append(str(body)[:300])
        elif status >= 400:
            kind = "4xx"
        else:
            kind = "degraded" if degraded else "ok"
        self.tally.outcomes[(phase, group, kind)] += 1
        self.tally.timeline.append(
            (sent, group, kind if body is None or "results" not in body else f"events {kind}")
        )

    async def page_view(self, http: aiohttp.ClientSession, visitor: str) -> None:
        phase, sent, ids = self.phase, time.monotonic(), self._new_ids(visitor, 1)
        body: dict[str, Any] = {"visitor_id": visitor,
                                "events": [{"type": "page_view", "event_id": ids[0]}]}  # fmt: skip
        if self.placement:
            body["placements"] = [self.placement]
        status, answer = await self._post(http, "/v1/context", body)
        ok = status == 200 and isinstance(answer, dict)
        degraded = bool(answer.get("degraded")) if ok else False
        self._record(visitor, ids, answer.get("events") if ok else None)
        self._count(phase, sent, visitor, status, answer, degraded)

    async def events(self, http: aiohttp.ClientSession, visitor: str, n: int,
                     ids: list[str] | None = None) -> bool:  # fmt: skip
        """Send `n` new events (or retry `ids`); whether all were acknowledged. A batch
        is degraded when some event was not acknowledged."""
        phase, sent, ids = self.phase, time.monotonic(), ids or self._new_ids(visitor, n)
        batch = [{"visitor_id": visitor, "type": "page_view", "event_id": i} for i in ids]
        status, answer = await self._post(http, "/v1/events", batch)
        results = answer.get("results") if status == 202 and isinstance(answer, dict) else None
        self._record(visitor, ids, results)
        acked = results is not None and all(r.get("status") in ACKED for r in results)
        self._count(phase, sent, visitor, 200 if status == 202 else status, answer, not acked)
        return acked

    async def retry_unacknowledged(self, within: float = 30.0) -> None:
        """Send every unacknowledged event again with its id until all are acknowledged
        (AssertionError after `within` seconds)."""
        deadline = time.monotonic() + within
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while any(self.tally.unacked.values()):
                assert time.monotonic() < deadline, "events still unacknowledged after retries"
                for visitor, ids in list(self.tally.unacked.items()):
                    batch = sorted(ids)
                    for start in range(0, len(batch), 50):
                        chunk = batch[start : start + 50]
                        status, answer = await self._post(http, "/v1/events", [
                            {"visitor_id": visitor, "type": "page_view", "event_id": i}
                            for i in chunk])  # fmt: skip
                        if status == 202:
                            self._record(visitor, chunk, answer["results"])
                if any(self.tally.unacked.values()):
                    await asyncio.sleep(0.2)

    async def page_views(self, admin_token: str, site: str = "s") -> dict[str, int]:
        """The `page_views` stored for every visitor the load sent events for (0 when
        the visitor has no profile), read through the admin API."""
        out: dict[str, int] = {}
        headers = {"Authorization": f"Bearer {admin_token}"}
        async with aiohttp.ClientSession() as http:
            for visitor in self.tally.sent:
                async with http.get(f"{self.base}/v1/admin/sites/{site}/visitors/{visitor}",
                                    headers=headers) as resp:  # fmt: skip
                    body = await resp.json()
                    out[visitor] = (int(body["attributes"]["page_views"])
                                    if resp.status == 200 else 0)  # fmt: skip
        return out


@dataclass(frozen=True)
class Reconciled:
    acknowledged: int  # events acknowledged while the load ran
    lost: int  # acknowledged, not in the profile
    doubled: int  # counted more than once after the retries
    visitors: int


def reconcile(tally: Tally, counted: dict[str, int], acked_during: int) -> Reconciled:
    """Compare each visitor's `page_views` (`counted`) with the ids sent for it (all
    acknowledged by now: see Load.retry_unacknowledged)."""
    lost = doubled = 0
    for visitor, ids in tally.sent.items():
        have = counted.get(visitor, 0)
        lost += max(0, len(ids) - have)
        doubled += max(0, have - len(ids))
    return Reconciled(acked_during, lost, doubled, len(tally.sent))
