"""The page-view endpoint and the admin API of placements, content and campaigns."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from segserver.catalogue.campaigns import check_policy
from segserver.errors import StorageError
from segserver.flows import pageview
from segserver.http.keys import SERVICES, SETTINGS
from segserver.http.middlewares import is_admin
from segserver.http.request import json_body, json_response, now, site_of

routes = web.RouteTableDef()


@routes.post("/v1/context")
async def context(request: web.Request) -> web.Response:
    """One round trip per page view: `{visitor_id, events, placements, explain?}` →
    `{visitor_id, segments, decisions, events, degraded, catalogue_version, explain?}`."""
    services = request.app[SERVICES]
    body = await json_body(request)
    req = pageview.parse_request(body, request.app[SETTINGS].max_events_per_request)
    try:
        ctx = await site_of(request, body)
    except StorageError:  # Redis down and the site not cached: still answer the page
        services.metrics.degraded.inc()
        return json_response(pageview.fallback(None, req))
    may_explain = is_admin(request) or bool(ctx.site.options.get("explain_public"))
    answer = await pageview.handle(services, ctx, req, now(request), may_explain)
    return json_response(answer)


@routes.get("/v1/visitors/{visitor}/segments")
async def visitor_segments(request: web.Request) -> web.Response:
    """The visitor's segments now (evaluated at request time, never a stored bitset)."""
    services = request.app[SERVICES]
    req = pageview.parse_request({"visitor_id": request.match_info["visitor"]}, 0)
    ctx = await site_of(request)
    answer = await pageview.handle(services, ctx, req, now(request), False)
    return json_response({"visitor_id": req.visitor_id, "segments": answer["segments"],
                          "degraded": answer["degraded"]})  # fmt: skip


def _item_routes(kind: str, plural: str) -> None:
    base = f"/v1/admin/sites/{{site}}/{plural}"

    async def list_(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        site = (await services.runtime.get(request.match_info["site"])).site.id
        return json_response({plural: await services.items[kind].all(site)})

    async def create(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        site = (await services.runtime.get(request.match_info["site"])).site.id
        item = await services.items[kind].create(site, await json_body(request))
        services.runtime.forget(site)
        return json_response(item, status=201)

    async def get(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        item = await services.items[kind].get(request.match_info["site"], request.match_info["id"])
        return json_response(item)

    async def update(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        site = request.match_info["site"]
        item = await services.items[kind].update(site, request.match_info["id"],
                                                 await json_body(request))  # fmt: skip
        services.runtime.forget(site)
        return json_response(item)

    async def delete(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        site = request.match_info["site"]
        await services.items[kind].delete(site, request.match_info["id"])
        services.runtime.forget(site)
        return web.Response(status=204)

    async def versions(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        found = await services.items[kind].versions(request.match_info["site"],
                                                    request.match_info["id"])  # fmt: skip
        return json_response({"versions": found})

    routes.get(base)(list_)
    routes.post(base)(create)
    routes.get(base + "/{id}")(get)
    routes.put(base + "/{id}")(update)
    routes.patch(base + "/{id}")(update)
    routes.delete(base + "/{id}")(delete)
    routes.get(base + "/{id}/versions")(versions)


for _kind, _plural in (("placement", "placements"), ("content", "content"),
                       ("campaign", "campaigns")):  # fmt: skip
    _item_routes(_kind, _plural)


@routes.put("/v1/admin/sites/{site}/policy")
async def put_policy(request: web.Request) -> web.Response:
    """The site-wide policy: `{interruptive_per_session, interruptive_per_day, holdout}`."""
    services = request.app[SERVICES]
    site = await services.sites.get(request.match_info["site"])
    policy = check_policy(await json_body(request))
    changed = await services.sites.update(site.id, {"options": {**site.options,
                                                                "policy": policy}})  # fmt: skip
    await services.catalogue.bump(site.id)
    services.runtime.forget(site.id)
    return json_response(changed.options["policy"])


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body: Any = request.app[SERVICES].metrics.exposition()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
