"""The public API: what websites and shop back ends call with a site key.
Each handler parses, calls one flow and serialises."""

from __future__ import annotations

from aiohttp import web

from segserver.errors import StorageError
from segserver.flows.pageview import PageViewRequest
from segserver.http.keys import SERVICES
from segserver.http.middlewares import is_admin
from segserver.http.request import json_body, json_response, now, site_of

routes = web.RouteTableDef()


@routes.post("/v1/context")
async def context(request: web.Request) -> web.Response:
    """One round trip per page view: `{visitor_id, events, placements, explain?}` →
    `{visitor_id, segments, decisions, events, degraded, catalogue_version, explain?}`."""
    services = request.app[SERVICES]
    body = await json_body(request)
    req = PageViewRequest.parse(body, services.settings.max_events_per_request)
    try:
        ctx = await site_of(request, body)
    except StorageError:  # Redis down and the site not cached: still answer the page
        services.metrics.degraded.inc()
        return json_response(services.pageviews.fallback(None, req).to_json())
    may_explain = is_admin(request) or bool(ctx.site.options.get("explain_public"))
    answer = await services.pageviews.handle(ctx, req, now(request), may_explain)
    return json_response(answer.to_json())


@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    """A batch of events: `{events: [{visitor_id, type, ts?, event_id?, properties}]}`
    (a bare list is accepted too) → 202 with a result per event."""
    body = await json_body(request)
    ctx = await site_of(request, body)
    flow = request.app[SERVICES].events
    answer = await flow.ingest(ctx, flow.parse(body), now(request))
    return json_response(answer.to_json(), status=202)


@routes.get("/v1/visitors/{visitor}/segments")
async def visitor_segments(request: web.Request) -> web.Response:
    """The visitor's segments now (evaluated at request time, never a stored bitset)."""
    services = request.app[SERVICES]
    req = PageViewRequest.parse({"visitor_id": request.match_info["visitor"]}, 0)
    ctx = await site_of(request)
    segments, degraded = await services.pageviews.segments_now(ctx, req.visitor_id, now(request))
    return json_response({"visitor_id": req.visitor_id, "segments": segments,
                          "degraded": degraded})  # fmt: skip
