"""After a visitor's events are stored: the one step the page view and `POST /v1/events`
share (STYLE.md: a use case is written once).

    evaluate once  →  plan the finishing write  →  one call (lua/finish_visitor.lua)

The plan holds the membership commit (diffed against the stored bitmap the apply
script returned), the feedback and goal outcomes of the stored events, and the
recommendation signals (recently viewed, popularity site-wide and in the visitor's
segments). A page view adds its served decisions (cap reservations and exposures) to
the same plan, so a page view costs two Redis round trips: apply, then finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from segserver import recommend
from segserver.catalogue.runtime import SiteContext
from segserver.errors import SegserverError
from segserver.membership import Evaluation, commit, evaluate_profile, evaluated_of, write_of
from segserver.metrics import Metrics
from segserver.profile.events import Event
from segserver.profile.ingest import IngestResult
from segserver.results import outcomes_of
from segserver.storage.finish import STALE_READ, Finish, Finished, FinishStore
from segserver.storage.keys import Keys
from segserver.storage.membership import MembershipStore
from segserver.storage.profiles import Applied

log = logging.getLogger("segserver.flows")


@dataclass
class AfterEvents:
    finish_store: FinishStore
    membership: MembershipStore
    keys: Keys
    metrics: Metrics
    token_secret: bytes

    def evaluate(self, ctx: SiteContext, visitor_id: str, applied: Applied,
                 now: float) -> Evaluation:  # fmt: skip
        """The one evaluation of the visitor for this request."""
        return evaluate_profile(ctx, visitor_id, applied.profile, now, self.metrics)

    def plan(
        self, ctx: SiteContext, ev: Evaluation, applied: Applied, stored: Sequence[Event],
        segments: Sequence[str],
    ) -> Finish:  # fmt: skip
        """The finishing write of one visitor: its membership commit when events were
        stored (`stored`: the ones applied, not duplicates), their outcomes and signals;
        `segments` are the visitor's segments now (`ev.segments(...)`)."""
        if not stored:
            return Finish()
        recent, popularity = recommend.signals_of(stored, segments, ev.now)
        return Finish(
            membership=write_of(ctx, ev, applied.bits, "event"),
            outcomes=outcomes_of(stored, ctx.goals, self.token_secret, ctx.site.id),
            recent=recent,
            popularity=popularity,
        )

    async def run(self, ctx: SiteContext, ev: Evaluation, plan: Finish) -> Finished:
        """One finishing call. If the stored membership moved between the two round
        trips (a concurrent commit of the same visitor), the membership part is written
        again by the script that diffs inside Redis (a third call, rare)."""
        done = await self.finish_store.finish(ctx.site.id, ev.visitor_id, plan, ev.now)
        if done.membership == STALE_READ and (item := evaluated_of(ev)) is not None:
            await commit(self.membership, self.keys, ctx, [item], "event", ev.now)
        return done

    async def after_batch(self, ctx: SiteContext, result: IngestResult, now: float) -> None:
        """`POST /v1/events`: evaluate and finish every visitor with stored events, each
        in one call, concurrently. Best effort: the events are stored; what fails here is
        caught up by the visitor's next event or the expiry scheduler."""
        stored: dict[str, list[Event]] = defaultdict(list)
        for event in result.stored_events:
            stored[event.visitor_id].append(event)

        async def one(visitor_id: str, events: list[Event]) -> None:
            applied = result.applied[visitor_id]
            ev = self.evaluate(ctx, visitor_id, applied, now)
            segments = ev.segments(ctx, applied.bits) if recommend.wants_segments(events) else []
            plan = self.plan(ctx, ev, applied, events, segments)
            try:
                await self.run(ctx, ev, plan)
            except SegserverError as exc:
                log.warning("site %s: visitor %s not finished: %s", ctx.site.id, visitor_id,
                            exc.message)  # fmt: skip

        await asyncio.gather(*(one(v, evs) for v, evs in stored.items()))
