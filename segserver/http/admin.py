"""The admin API (bearer admin token, checked by the middleware): sites, visitors."""

from __future__ import annotations

from aiohttp import web

from segserver.errors import NotFoundError
from segserver.http.keys import SERVICES
from segserver.http.request import json_body, json_response
from segserver.profile import codec
from segserver.profile.identity import check_visitor_id

routes = web.RouteTableDef()


@routes.post("/v1/admin/sites")
async def create_site(request: web.Request) -> web.Response:
    """A new site; the prebuilt segments are installed unless `"prebuilt": false`."""
    services = request.app[SERVICES]
    body = await json_body(request)
    site = await services.sites.create(body)
    out = site.to_json()
    if not (isinstance(body, dict) and body.get("prebuilt") is False):
        ctx = await services.runtime.get(site.id)
        layout, vocab = ctx.data.schema.layout, ctx.data.vocab
        out["segments"] = await services.segments.install_prebuilt(site.id, layout, vocab)
        services.runtime.forget(site.id)
    return json_response(out, status=201)


@routes.get("/v1/admin/sites")
async def list_sites(request: web.Request) -> web.Response:
    return json_response({"sites": await request.app[SERVICES].sites.list_ids()})


@routes.get("/v1/admin/sites/{site}")
async def get_site(request: web.Request) -> web.Response:
    site = await request.app[SERVICES].sites.get(request.match_info["site"])
    return json_response(site.to_json())


@routes.patch("/v1/admin/sites/{site}")
async def update_site(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    site = await services.sites.update(request.match_info["site"], await json_body(request))
    services.runtime.forget(site.id)
    return json_response(site.to_json())


@routes.post("/v1/admin/sites/{site}/rotate-key")
async def rotate_key(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    site = await services.sites.rotate_key(request.match_info["site"])
    services.runtime.forget(site.id)
    return json_response(site.to_json())


@routes.get("/v1/admin/sites/{site}/visitors/{visitor}")
async def get_visitor(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    vid = check_visitor_id(request.match_info["visitor"], "visitor id")
    blob = await services.profiles.get(ctx.site.id, vid)
    if blob is None:
        raise NotFoundError(f"visitor {vid!r} has no profile on site {ctx.site.id!r}")
    layout = ctx.data.schema.layout
    if codec.unknown_codes(blob, layout, ctx.data.vocab):
        await services.runtime.refresh_dictionaries(ctx)
    return json_response(
        {"visitor_id": vid, "site": ctx.site.id, **codec.to_json(blob, layout, ctx.data.vocab)}
    )


@routes.delete("/v1/admin/sites/{site}/visitors/{visitor}")
async def delete_visitor(request: web.Request) -> web.Response:
    """Right to be forgotten: every key of the visitor is erased."""
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    vid = check_visitor_id(request.match_info["visitor"], "visitor id")
    extra = [*services.results.store.visitor_keys(ctx.site.id, vid),
             services.recommender.store.recent_key(ctx.site.id, vid)]  # fmt: skip
    existed = await services.profiles.delete(ctx.site.id, vid, extra)
    if not existed:
        raise NotFoundError(f"visitor {vid!r} has no profile on site {ctx.site.id!r}")
    return web.Response(status=204)
