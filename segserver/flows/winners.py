"""Which campaign wins for which segment: for each placement, its active campaigns in
priority order with how many visitors each one's audience holds (`eligible`), how many
it wins (eligible and not taken by a campaign above it), and who took the rest
(`lost_to`); and for each segment the campaigns' audiences name, how its members split
between the winners and the placement's default.

Counted exactly on stored membership with set expressions (lua/combine_segments.lua,
as `POST .../segments/query` does), by audience and priority only: what varies per
visitor and page view (frequency caps, holdouts, exclusive groups across placements,
site-wide interruptive limits) is decided when a page is served, and the visitor
explain shows it for one visitor.

    audience(c) = (include, any: or / all: and) and not (or of exclude)
                  (no include: everyone, the site's constant-true segment)
    wins(c_k)   = audience(c_k) and not (audience(c_1) or ... or audience(c_k-1))
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from segserver.catalogue.analytics import SegmentAnalytics, compile_expression, usable
from segserver.catalogue.runtime import SiteContext
from segserver.decide import Campaign
from segserver.errors import NotFoundError, ValidationError

#: Bounds on one placement's table: its size grows as campaigns × (campaigns + segments).
MAX_CAMPAIGNS = 12
MAX_SEGMENTS = 16
DEFAULT = "(default)"

Expr = Any


@dataclass
class _Row:
    campaign: Campaign
    audience: Expr | None  # None: not countable (`why`)
    why: str | None = None


def _everyone(ctx: SiteContext) -> str | None:
    """An active segment matching every visitor (`{"const": true}`), if the site has one."""
    for seg in sorted(ctx.segments.values(), key=lambda s: s.id):
        if seg.evaluated and seg.rule == {"const": True}:
            return seg.id
    return None


def _audience(ctx: SiteContext, c: Campaign, everyone: str | None) -> _Row:
    for sid in (*c.include, *c.exclude):
        try:
            usable(ctx, sid, "audience")
        except (ValidationError, NotFoundError) as exc:
            return _Row(c, None, exc.message.removeprefix("audience: "))
    if c.include:
        base: Expr = {"and" if c.match == "all" else "or": list(c.include)}
    elif everyone is not None:
        base = everyone
    else:
        return _Row(c, None, "no include (everyone) and no constant-true segment to count with")
    if c.exclude:
        return _Row(c, {"and": [base, {"not": {"or": list(c.exclude)}}]})
    return _Row(c, base)


def _but_not(expr: Expr, others: list[Expr]) -> Expr:
    return {"and": [expr, {"not": {"or": list(others)}}]} if others else expr


@dataclass
class Winners:
    analytics: SegmentAnalytics

    async def count(self, ctx: SiteContext, expr: Expr) -> int:
        compiled = compile_expression(ctx, expr)
        done = await self.analytics.store.combine(
            ctx.site.id, compiled.leaves, compiled.program, 0, keep=False
        )
        return done.count

    async def table(self, ctx: SiteContext, now: float) -> dict[str, Any]:
        """Every placement's table (see the module doc)."""
        everyone = _everyone(ctx)
        out = {}
        for pid in sorted(ctx.placements):
            live = [
                c
                for c in ctx.campaigns_in_order()
                if c.placement == pid
                and c.status == "active"
                and (c.start is None or c.start <= now)
                and (c.end is None or now < c.end)
            ]
            out[pid] = await self._placement(ctx, live[:MAX_CAMPAIGNS], everyone)
            out[pid]["truncated"] = len(live) > MAX_CAMPAIGNS
        return {"placements": out, "at": now, "everyone": everyone}

    async def _placement(
        self, ctx: SiteContext, live: list[Campaign], everyone: str | None
    ) -> dict[str, Any]:
        rows = [_audience(ctx, c, everyone) for c in live]
        counted = [r for r in rows if r.audience is not None]
        above: list[Expr] = []
        wins: dict[str, Expr] = {}
        for r in counted:
            wins[r.campaign.id] = _but_not(r.audience, above)
            above.append(r.audience)
        named = sorted({s for r in counted for s in (*r.campaign.include, *r.campaign.exclude)})
        named = named[:MAX_SEGMENTS]

        jobs: dict[tuple[str, str], Expr] = {}
        for i, r in enumerate(counted):
            cid = r.campaign.id
            jobs[("eligible", cid)] = r.audience
            jobs[("wins", cid)] = wins[cid]
            for higher in counted[:i]:
                jobs[(f"lost:{cid}", higher.campaign.id)] = {
                    "and": [r.audience, wins[higher.campaign.id]]
                }
        for sid in named:
            jobs[("size", sid)] = sid
            for r in counted:
                jobs[(f"seg:{sid}", r.campaign.id)] = {"and": [sid, wins[r.campaign.id]]}
            jobs[(f"seg:{sid}", DEFAULT)] = _but_not(sid, above)
        counts = dict(
            zip(
                jobs,
                await asyncio.gather(*(self.count(ctx, e) for e in jobs.values())),
                strict=True,
            )
        )

        campaigns = []
        for r in rows:
            c = r.campaign
            item: dict[str, Any] = {
                "id": c.id,
                "name": ctx.campaigns.get(c.id, {}).get("name", ""),
                "priority": c.priority,
                "group": c.group,
                "include": list(c.include),
                "match": c.match,
                "exclude": list(c.exclude),
                "countable": r.audience is not None,
            }
            if r.audience is None:
                item["why"] = r.why
            else:
                item["eligible"] = counts[("eligible", c.id)]
                item["wins"] = counts[("wins", c.id)]
                item["lost_to"] = {
                    k[1]: n for k, n in counts.items() if k[0] == f"lost:{c.id}" and n
                }
            campaigns.append(item)
        segments = [
            {
                "id": sid,
                "size": counts[("size", sid)],
                "winners": {k[1]: n for k, n in counts.items() if k[0] == f"seg:{sid}"},
            }
            for sid in named
        ]
        return {"campaigns": campaigns, "segments": segments}
