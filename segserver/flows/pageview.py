"""One page view (`POST /v1/context`): apply the visitor's events, evaluate every active
segment once at `now`, decide each placement, then one finishing write — two Redis
round trips, within a time budget; past it (or with Redis down) the answer is the
fallback (each placement's default content, `degraded: true`), never an error.

    round trip 1   lua/apply_events.lua: events applied; profile, stored membership
                   bitmap and cap counters returned
    CPU            one evaluation → segments → priority resolution (decide/)
    round trip 2   lua/finish_visitor.lua: membership commit, outcomes, recommendation
                   signals, cap reservations and exposures of the served decisions

A concurrent page view of the same visitor may use a cap between the two: what lost
its reservation is decided again (decide.redecide) and reserved in one more call (rare).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segserver import decide as d
from segserver.catalogue.runtime import SiteContext
from segserver.engine import explain
from segserver.errors import StorageError, StorageTimeout, ValidationError
from segserver.flows.after_events import AfterEvents, log
from segserver.logs import Throttled
from segserver.membership import Evaluation
from segserver.metrics import Metrics
from segserver.profile.identity import check_site_id, check_visitor_id
from segserver.profile.ingest import NOT_STORED, PENDING, REJECTED, Ingestor, Prepared
from segserver.recommend import Recommender
from segserver.results import HOLDOUT
from segserver.storage.finish import Finish, Serve

MAX_PLACEMENTS = 20
_PLACEMENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # catalogue.campaigns.SLUG
_FIELDS = frozenset({"visitor_id", "events", "placements", "explain", "site"})


@dataclass(frozen=True, slots=True)
class PageViewRequest:
    visitor_id: str
    events: list[Any]
    placements: list[str]
    explain: bool

    @classmethod
    def parse(cls, body: Any, max_events: int) -> PageViewRequest:
        """`{visitor_id, events?, placements?, explain?, site?}` (400 naming the field)."""
        if not isinstance(body, dict):
            raise ValidationError("body: must be an object")
        unknown = body.keys() - _FIELDS
        if unknown:
            raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
        vid = check_visitor_id(body.get("visitor_id"))
        events = body.get("events")
        events = [] if events is None else events
        if not isinstance(events, list):
            raise ValidationError("events: must be a list of events")
        if len(events) > max_events:
            raise ValidationError(f"events: more than {max_events} events", code="too_many_events")
        placements = body.get("placements")
        placements = [] if placements is None else placements
        if not isinstance(placements, list) or len(placements) > MAX_PLACEMENTS:
            raise ValidationError(f"placements: must be a list of at most {MAX_PLACEMENTS} ids")
        for i, p in enumerate(placements):
            if not isinstance(p, str) or not _PLACEMENT.fullmatch(p):
                raise ValidationError(f"placements[{i}]: must be a placement id: 1-64 of "
                                      "a-z 0-9 _ - (starting a-z0-9)")  # fmt: skip
        site = body.get("site")
        if site is not None:
            check_site_id(site, "site")
        explain_ = body.get("explain", False)
        if not isinstance(explain_, bool):
            raise ValidationError("explain: must be true or false")
        return cls(vid, events, placements, explain_)


@dataclass(frozen=True, slots=True)
class Placed:
    """What one placement shows: a campaign's variant, or the placement's default
    content (campaign and variant null, no token)."""

    campaign: str | None
    variant: str | None
    content: dict[str, Any] | None
    token: str | None


@dataclass(slots=True)
class PageViewAnswer:
    visitor_id: str
    segments: list[str]
    decisions: dict[str, Placed | None]
    events: list[dict[str, Any]]
    degraded: bool
    catalogue_version: str
    explain: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The response body (orjson serialises the Placed dataclasses natively)."""
        out = {"visitor_id": self.visitor_id, "segments": self.segments,
               "decisions": self.decisions, "events": self.events, "degraded": self.degraded,
               "catalogue_version": self.catalogue_version}  # fmt: skip
        if self.explain is not None:
            out["explain"] = self.explain
        return out


@dataclass
class _Progress:
    sent: bool = False  # the apply call was started: its writes may happen


@dataclass
class PageViews:
    ingestor: Ingestor
    after: AfterEvents
    recommender: Recommender
    metrics: Metrics
    budget_seconds: float
    token_secret: bytes
    token_ttl: float = d.TOKEN_TTL
    _log: Throttled = field(default_factory=lambda: Throttled(log))

    async def handle(self, ctx: SiteContext, req: PageViewRequest, now: float,
                     may_explain: bool, *, trusted: bool = False) -> PageViewAnswer:  # fmt: skip
        """The page view. `trusted`: the caller holds the site's server key (a shop's back
        end rendering the page), so trusted event types (purchase, identify ...) count."""
        prepared = self.ingestor.prepare(ctx.data, req.events, now, visitor_id=req.visitor_id,
                                         trusted=trusted)  # fmt: skip
        progress = _Progress()
        try:
            async with asyncio.timeout(self.budget_seconds):
                return await self._handle(ctx, req, prepared, now, may_explain, progress)
        except (TimeoutError, StorageError) as exc:
            timeout = isinstance(exc, TimeoutError | StorageTimeout)
            self.metrics.redis_errors.labels("timeout" if timeout else "error").inc()
            self.metrics.degraded.inc()
            why = "time budget exceeded" if timeout else "Redis failed"
            self._log.warning(why, "site %s: degraded answer (%s)", ctx.site.id,
                              why if timeout else exc)  # fmt: skip
            status = PENDING if progress.sent and timeout else NOT_STORED
            return self.fallback(ctx, req, prepared, status)

    def fallback(self, ctx: SiteContext | None, req: PageViewRequest,
                 prepared: Prepared | None = None, status: str = NOT_STORED
                 ) -> PageViewAnswer:  # fmt: skip
        """Each placement's default content (or null), no segments: the degraded answer.
        Invalid events keep their `rejected` result; the others get `status`."""
        events = [{"index": i, "status": status} for i in range(len(req.events))]
        if prepared is not None:
            events = [r.to_json() if r.status == REJECTED and r.error is not None
                      else {"index": r.index, "status": status}
                      for r in prepared.results]  # fmt: skip
        return PageViewAnswer(
            req.visitor_id, [], {pid: _default(ctx, pid) for pid in req.placements}, events,
            True, str(ctx.catalogue_version) if ctx else "0",
        )  # fmt: skip

    async def _handle(
        self, ctx: SiteContext, req: PageViewRequest, prepared: Prepared, now: float,
        may_explain: bool, progress: _Progress,
    ) -> PageViewAnswer:  # fmt: skip
        progress.sent = True
        result = await self.ingestor.store(ctx.data, prepared, now, visitor_id=req.visitor_id)
        for r in result.results:
            self.metrics.events.labels(r.status).inc()
        applied = result.applied[req.visitor_id]
        ev = self.after.evaluate(ctx, req.visitor_id, applied, now)
        segments = ev.segments(ctx, applied.bits)
        plan = self.after.plan(ctx, ev, applied, result.stored_events, segments)

        sessions = float(ev.features[ctx.data.schema.layout["sessions"].index])
        periods = d.Periods.at(now, 0 if math.isnan(sessions) else int(sessions))
        counts = d.Counts(applied.caps, periods)
        campaigns = ctx.decision_campaigns()
        members = frozenset(segments)
        explaining = req.explain and may_explain
        outcome = d.decide(req.visitor_id, req.placements, ctx.campaigns_in_order(), members,
                           counts, ctx.policy, now, explain=explaining)  # fmt: skip
        plan.served = _serves(outcome, campaigns, periods, ctx.policy, set())
        plan.periods = (periods.session, periods.day, periods.week)
        done = await self.after.run(ctx, ev, plan)
        outcome = await self._settle(ctx, req, members, plan, done.served, outcome, counts, now)

        decisions: dict[str, Placed | None] = {}
        for pid, dec in outcome.decisions.items():
            if dec is None:
                decisions[pid] = _default(ctx, pid)
            else:
                token = d.make_token(self.token_secret, ctx.site.id, dec, req.visitor_id, now,
                                     self.token_ttl)  # fmt: skip
                decisions[pid] = Placed(dec.campaign, dec.variant, _content(ctx, dec.content),
                                        token)  # fmt: skip
        await self._add_products(ctx, req.visitor_id, decisions, now)
        answer = PageViewAnswer(
            req.visitor_id, segments, decisions, [r.to_json() for r in result.results], False,
            str(ctx.catalogue_version),
        )  # fmt: skip
        if explaining:
            answer.explain = _explain(ev, outcome)
        return answer

    async def _settle(
        self, ctx: SiteContext, req: PageViewRequest, members: frozenset[str], plan: Finish,
        reserved_now: list[bool], outcome: d.Result, counts: d.Counts, now: float,
    ) -> d.Result:  # fmt: skip
        """Decide again what lost its cap reservation to a concurrent page view, and
        reserve that (at most decide.ROUNDS calls in all); what still cannot be
        reserved is left to the placement's default."""
        campaigns = ctx.decision_campaigns()
        served = list(plan.served)
        reserved = {s.campaign for s, ok in zip(served, reserved_now, strict=True) if ok}
        lost = {s.campaign for s, ok in zip(served, reserved_now, strict=True) if not ok}
        for _ in range(d.ROUNDS - 1):
            if not lost:
                return outcome
            counts = d.as_if_full(counts, lost, campaigns)
            outcome = d.redecide(req.visitor_id, campaigns, members, counts, ctx.policy, now,
                                 outcome, lost)  # fmt: skip
            retry = _serves(outcome, campaigns, counts.periods, ctx.policy,
                            reserved | {s.campaign for s in served})  # fmt: skip
            if not retry:
                lost = set()
                break
            p = counts.periods
            again = await self.after.finish_store.finish(
                ctx.site.id, req.visitor_id,
                Finish(served=retry, periods=(p.session, p.day, p.week)), now,
            )  # fmt: skip
            served += retry
            for s, ok in zip(retry, again.served, strict=True):
                (reserved if ok else lost).add(s.campaign)
            lost -= reserved
        for placement, dec in outcome.decisions.items():
            if dec is not None and dec.campaign not in reserved:
                outcome.decisions[placement] = None
        return outcome

    async def _add_products(
        self, ctx: SiteContext, visitor_id: str, decisions: Mapping[str, Placed | None],
        now: float,
    ) -> None:  # fmt: skip
        """Resolve recommendations content to product ids (`content.products`)."""
        for placed in decisions.values():
            content = placed.content if placed is not None else None
            if content is not None and content["kind"] == "recommendations":
                content["products"] = await self.recommender.products(
                    ctx.site.id, visitor_id, content["payload"], now)  # fmt: skip

    async def segments_now(self, ctx: SiteContext, visitor_id: str, now: float
                           ) -> tuple[list[str], bool]:  # fmt: skip
        """The visitor's segments now (evaluated, never a stored bitset) and whether the
        answer is degraded (Redis slow or down: no segments)."""
        nothing = self.ingestor.prepare(ctx.data, [], now, visitor_id=visitor_id)
        try:
            async with asyncio.timeout(self.budget_seconds):
                result = await self.ingestor.store(ctx.data, nothing, now, visitor_id=visitor_id)
        except (TimeoutError, StorageError):
            self.metrics.degraded.inc()
            return [], True
        applied = result.applied[visitor_id]
        ev = self.after.evaluate(ctx, visitor_id, applied, now)
        return ev.segments(ctx, applied.bits), False


def _serves(
    outcome: d.Result, campaigns: Mapping[str, d.Campaign], periods: d.Periods,
    policy: d.Policy, skip: set[str],
) -> list[Serve]:  # fmt: skip
    """What the served decisions and the holdout exposures reserve and record (campaigns
    in `skip` were handled by an earlier round)."""
    fields = {cid: f for f, cid in d.cap_increments(outcome, campaigns, periods, policy)}
    out = [Serve(dec.campaign, dec.variant, fields.get(dec.campaign, ()))
           for dec in outcome.decisions.values()
           if dec is not None and dec.campaign not in skip]  # fmt: skip
    out += [Serve(cid, HOLDOUT) for cid, _ in outcome.held_out if cid not in skip]
    return out


def _content(ctx: SiteContext, content_id: str | None) -> dict[str, Any] | None:
    item = ctx.contents.get(content_id) if content_id is not None else None
    if item is None:
        return None
    return {"id": item["id"], "kind": item["kind"], "payload": item["payload"]}


def _default(ctx: SiteContext | None, placement_id: str) -> Placed | None:
    """A placement's default content without a campaign, or None (no default, unknown)."""
    placement = ctx.placements.get(placement_id) if ctx else None
    content = _content(ctx, placement["default_content"]) if ctx and placement else None
    if content is None:
        return None
    return Placed(None, None, content, None)


def _explain(ev: Evaluation, outcome: d.Result) -> dict[str, Any]:
    return {
        "segments": explain(ev.program, ev.features, ev.now),
        "placements": {p: [{"campaign": c.campaign, "won": c.won, "reason": c.reason}
                           for c in considered] for p, considered in outcome.considered.items()},
        "global_holdout": outcome.global_holdout,
        "held_out": [c for c, _ in outcome.held_out],
    }  # fmt: skip
