"""The public API: what websites call with the site key and shop back ends with the
server key. Each handler parses, checks the caller's quotas (in process: no round
trip), calls one flow and serialises."""

from __future__ import annotations

from aiohttp import web

from segserver.errors import RateLimited, StorageError
from segserver.flows.pageview import PageViewRequest
from segserver.http.keys import SERVICES
from segserver.http.middlewares import is_root
from segserver.http.request import is_trusted, json_body, json_response, now, site_of
from segserver.trust.quotas import retry_after

routes = web.RouteTableDef()
RATE_LIMITED = "rate_limited"  # an event's status in an over-quota page view


@routes.post("/v1/context")
async def context(request: web.Request) -> web.Response:
    """One round trip per page view: `{visitor_id, events, placements, explain?}` →
    `{visitor_id, segments, decisions, events, degraded, catalogue_version, explain?}`.
    Over a quota: the degraded answer (defaults, nothing stored) with Retry-After."""
    services = request.app[SERVICES]
    body = await json_body(request)
    req = PageViewRequest.parse(body, services.settings.max_events_per_request)
    try:
        ctx = await site_of(request, body)
    except StorageError:  # Redis down and the site not cached: still answer the page
        services.metrics.degraded.inc()
        return json_response(services.pageviews.fallback(None, req).to_json())
    at = now(request)
    trusted = is_trusted(request)
    try:
        services.quotas.check_request(ctx.site.id, trusted, req.visitor_id, len(req.events), at)
    except RateLimited as exc:
        services.metrics.degraded.inc()
        answer = services.pageviews.fallback(ctx, req, None, RATE_LIMITED)
        response = json_response(answer.to_json())
        response.headers["Retry-After"] = retry_after(exc.retry_after)
        return response
    may_explain = trusted or is_root(request) or bool(ctx.site.options.get("explain_public"))
    answer = await services.pageviews.handle(ctx, req, at, may_explain, trusted=trusted)
    services.quotas.count_events(ctx.site.id, len(req.events))
    return json_response(answer.to_json())


@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    """A batch of events: `{events: [{visitor_id, type, ts?, event_id?, properties}]}`
    (a bare list is accepted too) → 202 with a result per event. Trusted event types
    need the server key."""
    services = request.app[SERVICES]
    body = await json_body(request)
    ctx = await site_of(request, body)
    flow = services.events
    events = flow.parse(body)
    at = now(request)
    trusted = is_trusted(request)
    visitors = {e.get("visitor_id") for e in events
                if isinstance(e, dict) and isinstance(e.get("visitor_id"), str)}  # fmt: skip
    one = next(iter(visitors)) if len(visitors) == 1 else None
    services.quotas.check_request(ctx.site.id, trusted, one, len(events), at)
    answer = await flow.ingest(ctx, events, at, trusted=trusted)
    services.quotas.count_events(ctx.site.id, answer.stored)
    return json_response(answer.to_json(), status=202)


@routes.get("/v1/visitors/{visitor}/segments")
async def visitor_segments(request: web.Request) -> web.Response:
    """The visitor's segments now (evaluated at request time, never a stored bitset);
    the server key only: a public key must not read other visitors."""
    services = request.app[SERVICES]
    req = PageViewRequest.parse({"visitor_id": request.match_info["visitor"]}, 0)
    ctx = await site_of(request, server_key_only=True)
    services.quotas.check_request(ctx.site.id, True, None, 0, now(request))
    segments, degraded = await services.pageviews.segments_now(ctx, req.visitor_id, now(request))
    return json_response({"visitor_id": req.visitor_id, "segments": segments,
                          "degraded": degraded})  # fmt: skip
