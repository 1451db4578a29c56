"""The admin API (bearer admin token, checked by the middleware): sites, visitors.
Each handler parses, calls one flow and serialises."""

from __future__ import annotations

from aiohttp import web

from segserver.http.keys import SERVICES
from segserver.http.request import json_body, json_response

routes = web.RouteTableDef()


@routes.post("/v1/admin/sites")
async def create_site(request: web.Request) -> web.Response:
    """A new site; the prebuilt segments are installed unless `"prebuilt": false`."""
    edits = request.app[SERVICES].edits
    return json_response(await edits.create_site(await json_body(request)), status=201)


@routes.get("/v1/admin/sites")
async def list_sites(request: web.Request) -> web.Response:
    return json_response({"sites": await request.app[SERVICES].sites.list_ids()})


@routes.get("/v1/admin/sites/{site}")
async def get_site(request: web.Request) -> web.Response:
    site = await request.app[SERVICES].sites.get(request.match_info["site"])
    return json_response(site.to_json())


@routes.patch("/v1/admin/sites/{site}")
async def update_site(request: web.Request) -> web.Response:
    edits = request.app[SERVICES].edits
    site = await edits.update_site(request.match_info["site"], await json_body(request))
    return json_response(site.to_json())


@routes.post("/v1/admin/sites/{site}/rotate-key")
async def rotate_key(request: web.Request) -> web.Response:
    site = await request.app[SERVICES].edits.rotate_key(request.match_info["site"])
    return json_response(site.to_json())


@routes.get("/v1/admin/sites/{site}/visitors/{visitor}")
async def get_visitor(request: web.Request) -> web.Response:
    visitors = request.app[SERVICES].visitors
    return json_response(await visitors.read(request.match_info["site"],
                                             request.match_info["visitor"]))  # fmt: skip


@routes.delete("/v1/admin/sites/{site}/visitors/{visitor}")
async def delete_visitor(request: web.Request) -> web.Response:
    """Right to be forgotten: every key of the visitor is erased."""
    await request.app[SERVICES].visitors.erase(request.match_info["site"],
                                               request.match_info["visitor"])  # fmt: skip
    return web.Response(status=204)
