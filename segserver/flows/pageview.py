"""One page view: apply the visitor's events, evaluate every active segment at `now`,
decide each placement, count the served decisions against caps, all within a Redis
time budget; past it (or with Redis down) answer the fallback, never an error.

Round trips: one Lua call applies the events and returns the profile, the stored
membership bitmap and the cap counters; then membership commit (only if an event
was stored) and the cap reservation run concurrently.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from segserver import decide as d
from segserver.catalogue.runtime import SiteContext
from segserver.engine import evaluate, explain
from segserver.errors import SegserverError, StorageError, StorageTimeout, ValidationError
from segserver.membership import bits_to_values, record_events
from segserver.metrics import Metrics
from segserver.profile import codec
from segserver.profile.identity import check_visitor_id
from segserver.profile.ingest import NOT_STORED, IngestResult
from segserver.storage.membership import bitmap_slots
from segserver.wiring import Services

log = logging.getLogger("segserver.pageview")
MAX_PLACEMENTS = 20


@dataclass(frozen=True)
class Request:
    visitor_id: str
    events: list[Any]
    placements: list[str]
    explain: bool


def parse_request(body: Any, max_events: int) -> Request:
    """Validate `{visitor_id, events?, placements?, explain?}` (400 naming the field)."""
    if not isinstance(body, dict):
        raise ValidationError("body: must be an object")
    unknown = set(body) - {"visitor_id", "events", "placements", "explain", "site"}
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
    vid = check_visitor_id(body.get("visitor_id"))
    events = body.get("events") or []
    if not isinstance(events, list):
        raise ValidationError("events: must be a list of events")
    if len(events) > max_events:
        raise ValidationError(f"events: more than {max_events} events", code="too_many_events")
    placements = body.get("placements") or []
    if (
        not isinstance(placements, list)
        or len(placements) > MAX_PLACEMENTS
        or not all(isinstance(p, str) and 0 < len(p) <= 64 for p in placements)
    ):
        raise ValidationError(f"placements: must be a list of at most {MAX_PLACEMENTS} ids")
    explain_ = body.get("explain", False)
    if not isinstance(explain_, bool):
        raise ValidationError("explain: must be true or false")
    return Request(vid, events, placements, explain_)


def token_secret(services: Services) -> bytes:
    s = services.settings
    return hashlib.sha256(f"segserver-tokens:{s.token_secret or s.admin_token}".encode()).digest()


def _content(ctx: SiteContext, content_id: str | None) -> dict[str, Any] | None:
    if content_id is None:
        return None
    item = ctx.contents.get(content_id)
    if item is None:
        return None
    return {"id": item["id"], "kind": item["kind"], "payload": item["payload"]}


def default_decision(ctx: SiteContext | None, placement_id: str) -> dict[str, Any] | None:
    """A placement's default content without a campaign, or None (no default, unknown)."""
    placement = ctx.placements.get(placement_id) if ctx else None
    content = _content(ctx, placement["default_content"]) if ctx and placement else None
    if content is None:
        return None
    return {"campaign": None, "variant": None, "content": content, "token": None}


def fallback(ctx: SiteContext | None, req: Request) -> dict[str, Any]:
    """Each placement's default content (or null), no segments: the degraded answer."""
    decisions = {pid: default_decision(ctx, pid) for pid in req.placements}
    return {"visitor_id": req.visitor_id, "segments": [], "decisions": decisions,
            "events": [{"index": i, "status": NOT_STORED} for i in range(len(req.events))],
            "degraded": True,
            "catalogue_version": str(ctx.catalogue_version) if ctx else "0"}  # fmt: skip


def segments_of(ctx: SiteContext, features: np.ndarray, stored_bits: bytes, now: float,
                metrics: Metrics | None = None) -> list[str]:  # fmt: skip
    """Active segments the visitor is in now: dynamic ones evaluated, static ones stored."""
    program = ctx.current_program()
    words = np.zeros(max(program.words, 1), np.uint64)
    started = time.perf_counter()
    evaluate(program, features, now, words)
    if metrics is not None:
        metrics.evaluation.observe(time.perf_counter() - started)
    values = bits_to_values(words, len(program.segment_ids))
    found = [sid for sid, v in zip(program.segment_ids, values, strict=True) if v]
    if ctx.static_slots and stored_bits:
        statics = ctx.static_slots
        found += [statics[slot] for slot in bitmap_slots(stored_bits).tolist() if slot in statics]
    prio = ctx.priorities
    return sorted(found, key=lambda sid: (-prio.get(sid, 0), sid))


async def handle(services: Services, ctx: SiteContext, req: Request, now: float,
                 may_explain: bool) -> dict[str, Any]:  # fmt: skip
    budget = services.settings.redis_budget_ms / 1000
    try:
        async with asyncio.timeout(budget):
            return await _handle(services, ctx, req, now, may_explain)
    except (TimeoutError, StorageError) as exc:
        timeout = isinstance(exc, TimeoutError | StorageTimeout)
        services.metrics.redis_errors.labels("timeout" if timeout else "error").inc()
        log.warning("site %s: degraded answer (%s)", ctx.site.id,
                    "time budget exceeded" if timeout else exc)  # fmt: skip
        services.metrics.degraded.inc()
        return fallback(ctx, req)


async def _handle(services: Services, ctx: SiteContext, req: Request, now: float,
                  may_explain: bool) -> dict[str, Any]:  # fmt: skip
    result: IngestResult = await services.ingestor.ingest(
        ctx.data, req.events, now, visitor_id=req.visitor_id)  # fmt: skip
    applied = result.applied[req.visitor_id]
    layout = ctx.data.schema.layout
    features = codec.features(applied.profile, layout)
    segments = segments_of(ctx, features, applied.bits, now, services.metrics)
    for r in result.results:
        services.metrics.events.labels(r.status).inc()
    sessions = float(features[layout["sessions"].index])
    periods = d.Periods.at(now, 0 if math.isnan(sessions) else int(sessions))
    counts = d.Counts(applied.caps, periods)
    campaigns = ctx.decision_campaigns()
    outcome = d.decide(req.visitor_id, req.placements, list(campaigns.values()),
                       frozenset(segments), counts, ctx.policy, now)  # fmt: skip

    commit: asyncio.Future[int] | None = None
    if result.stored_events:
        # a task, not a bare coroutine: if the time budget ends this request first, the
        # commit still completes (and its outcome is consumed) in the background
        commit = asyncio.ensure_future(
            record_events(
                services.membership, services.keys, ctx, {req.visitor_id: applied.profile}, now
            )
        )
        commit.add_done_callback(_consume)
    outcome = await _reserve_caps(services, ctx, req, campaigns, segments, counts, periods,
                                  outcome, now)  # fmt: skip
    if commit is not None:
        try:
            await commit
        except SegserverError as exc:
            log.warning("site %s: membership not committed: %s", ctx.site.id, exc.message)

    secret = token_secret(services)
    try:  # best effort; each hook returns at once, without I/O, when it has nothing to do
        served = [dec for dec in outcome.decisions.values() if dec is not None]
        await services.results.record_decisions(ctx.site.id, req.visitor_id, served,
                                                outcome.held_out, now)  # fmt: skip
        await services.results.record_events(ctx.site.id, result.stored_events, now, secret)
        await services.recommender.record_events(ctx.site.id, result.stored_events, segments,
                                                 now)  # fmt: skip
    except SegserverError as exc:
        log.warning("site %s: results not recorded: %s", ctx.site.id, exc.message)
    decisions: dict[str, Any] = {}
    for pid, dec in outcome.decisions.items():
        if dec is None:
            decisions[pid] = default_decision(ctx, pid)
        else:
            decisions[pid] = {"campaign": dec.campaign, "variant": dec.variant,
                              "content": _content(ctx, dec.content),
                              "token": d.make_token(secret, ctx.site.id, dec, req.visitor_id,
                                                    now)}  # fmt: skip
    await _add_products(services, ctx, req.visitor_id, decisions, now)
    answer: dict[str, Any] = {
        "visitor_id": req.visitor_id, "segments": segments, "decisions": decisions,
        "events": [r.to_json() for r in result.results], "degraded": False,
        "catalogue_version": str(ctx.catalogue_version),
    }  # fmt: skip
    if req.explain and may_explain:
        answer["explain"] = _explain(ctx, features, now, outcome)
    return answer


async def _add_products(services: Services, ctx: SiteContext, visitor_id: str,
                        decisions: Mapping[str, Any], now: float) -> None:  # fmt: skip
    """Resolve recommendations content to product ids (`content.products`)."""
    for answer in decisions.values():
        content = answer["content"] if answer is not None else None
        if content is not None and content["kind"] == "recommendations":
            content["products"] = await services.recommender.products(
                ctx.site.id, visitor_id, content["payload"], now)  # fmt: skip


def _consume(task: asyncio.Future[int]) -> None:
    """Retrieve a background commit's outcome (it may outlive its request)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("membership not committed: %s", exc)


async def _reserve_caps(
    services: Services, ctx: SiteContext, req: Request, campaigns: Mapping[str, d.Campaign],
    segments: list[str], counts: d.Counts, periods: d.Periods, outcome: d.Result, now: float,
) -> d.Result:  # fmt: skip
    """Count the served decisions against their caps atomically. A concurrent page view
    of the same visitor may have used a cap meanwhile: those placements are decided
    again as if the cap were full (at most three rounds, then left empty)."""
    reserved: set[str] = set()
    for _ in range(3):
        groups = [(g, cid) for g, cid in d.cap_increments(outcome, campaigns, periods, ctx.policy)
                  if cid not in reserved]  # fmt: skip
        if not groups:
            return outcome
        answers = await services.caps.reserve(
            ctx.site.id, req.visitor_id, [g for g, _ in groups],
            (periods.session, periods.day, periods.week))  # fmt: skip
        lost: set[str] = set()
        for (_, cid), ok in zip(groups, answers, strict=True):
            (reserved if ok else lost).add(cid)
        if not lost:
            return outcome
        fields = dict(counts.fields)
        for cid in lost:
            for cap in campaigns[cid].caps:
                fields[d.cap_field(cid, cap.per, periods)] = cap.max
            if campaigns[cid].interruptive:
                for per in ("session", "day"):
                    fields[d.cap_field("*", per, periods)] = 1 << 30
        counts = d.Counts(fields, periods)
        outcome = _redecide(req, campaigns, segments, counts, ctx.policy, now, outcome, lost)
    for placement, dec in outcome.decisions.items():
        if dec is not None and dec.campaign not in reserved and any(
            dec.campaign == cid for _, cid in d.cap_increments(outcome, campaigns, periods,
                                                               ctx.policy)):  # fmt: skip
            outcome.decisions[placement] = None
    return outcome


def _redecide(req: Request, campaigns: Mapping[str, d.Campaign], segments: list[str],
              counts: d.Counts, policy: d.Policy, now: float, previous: d.Result,
              lost: set[str]) -> d.Result:  # fmt: skip
    """Decide again for the placements whose winner lost its cap reservation; the
    other placements keep their (already counted) winners."""
    redo = [p for p, dec in previous.decisions.items() if dec is not None and dec.campaign in lost]
    kept = {c for p, dec in previous.decisions.items()
            if dec is not None and dec.campaign not in lost for c in [dec.campaign]}  # fmt: skip
    others = [c for c in campaigns.values() if c.id not in lost and c.id not in kept]
    fresh = d.decide(req.visitor_id, redo, others, frozenset(segments), counts, policy, now)
    merged = d.Result({**previous.decisions, **fresh.decisions},
                      {**previous.considered, **fresh.considered},
                      previous.held_out + fresh.held_out, previous.global_holdout)  # fmt: skip
    for p in redo:
        merged.considered[p] = [
            d.Considered(c, False, "frequency cap reached meanwhile")
            for c in lost
            if campaigns[c].placement == p
        ] + fresh.considered[p]
    return merged


def _explain(ctx: SiteContext, features: np.ndarray, now: float, outcome: d.Result
             ) -> dict[str, Any]:  # fmt: skip
    program = ctx.current_program()
    return {
        "segments": explain(program, features, now),
        "placements": {p: [{"campaign": c.campaign, "won": c.won, "reason": c.reason}
                           for c in considered] for p, considered in outcome.considered.items()},
        "global_holdout": outcome.global_holdout,
        "held_out": [c for c, _ in outcome.held_out],
    }  # fmt: skip
