"""The public API: what websites and shop back ends call (site key)."""

from __future__ import annotations

import logging

from aiohttp import web

from segserver.errors import StorageError, ValidationError
from segserver.flows import pageview
from segserver.http.keys import SERVICES, SETTINGS
from segserver.http.request import json_body, json_response, now, site_of
from segserver.membership import record_events
from segserver.profile import codec
from segserver.profile.events import Event

log = logging.getLogger("segserver.http")
routes = web.RouteTableDef()


@routes.post("/v1/events")
async def post_events(request: web.Request) -> web.Response:
    """A batch of events: `{events: [{visitor_id, type, ts?, event_id?, properties}]}`
    (a bare list is accepted too) → 202 with a result per event."""
    body = await json_body(request)
    ctx = await site_of(request, body)
    events = body.get("events") if isinstance(body, dict) else body
    if not isinstance(events, list):
        raise ValidationError("events: must be a list of events")
    limit = request.app[SETTINGS].max_events_per_request
    if len(events) > limit:
        raise ValidationError(
            f"events: more than {limit} events in one request", code="too_many_events"
        )
    if not events:
        raise ValidationError("events: empty")
    services = request.app[SERVICES]
    at = now(request)
    result = await services.ingestor.ingest(ctx.data, events, at)
    for r in result.results:
        services.metrics.events.labels(r.status).inc()
    rejected = [r for r in result.results if r.status == "rejected"]
    if len(rejected) == len(result.results) and rejected[0].error is not None:
        # nothing in the request was usable: a plain 400 naming the (first) field
        first = rejected[0].error
        raise ValidationError(
            first.message,
            code=first.code,
            details={"results": [r.to_json() for r in result.results]},
        )
    try:
        await record_events(services.membership, services.keys, ctx, result.profiles, at)
    except StorageError as exc:  # the events are stored; expiry or the next event catch up
        log.warning("site %s: membership not committed: %s", ctx.site.id, exc)
    try:  # results and recommendation data are best effort, like membership above
        await services.results.record_events(ctx.site.id, result.stored_events, at,
                                             pageview.token_secret(services))  # fmt: skip
        for vid, evs in _by_visitor(result.stored_events).items():
            segments: list[str] = []
            applied = result.applied.get(vid)
            if applied is not None and any(e.type in ("product_view", "purchase") for e in evs):
                features = codec.features(applied.profile, ctx.data.schema.layout)
                segments = pageview.segments_of(ctx, features, applied.bits, at)
            await services.recommender.record_events(ctx.site.id, evs, segments, at)
    except StorageError as exc:
        log.warning("site %s: results not recorded: %s", ctx.site.id, exc)
    return json_response(
        {"stored": result.stored, "results": [r.to_json() for r in result.results]}, status=202
    )


def _by_visitor(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for ev in events:
        out.setdefault(ev.visitor_id, []).append(ev)
    return out
