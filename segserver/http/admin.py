"""The admin API (bearer admin token; the middleware checks the role each operation
needs, segserver.http.operations): sites, their keys and admin tokens, visitors.
Each handler parses, calls one flow and serialises."""

from __future__ import annotations

from aiohttp import web

from segserver.api import sites as m
from segserver.http.keys import PRINCIPAL, SERVICES
from segserver.http.request import body_of, json_response, now
from segserver.trust.auth import Role

routes = web.RouteTableDef()


@routes.get("/v1/admin/whoami")
async def whoami(request: web.Request) -> web.Response:
    """The caller's role and site (the admin page signs in with this)."""
    p = request[PRINCIPAL]
    return json_response({"role": p.role.label, "site": p.site, "token_id": p.token_id})


@routes.post("/v1/admin/sites")
async def create_site(request: web.Request) -> web.Response:
    """A new site (root token); the answer holds its secret server key, once. The
    prebuilt segments are installed unless `"prebuilt": false`."""
    edits = request.app[SERVICES].edits
    return json_response(await edits.create_site(await body_of(request, m.SiteCreate)),
                         status=201)  # fmt: skip


@routes.get("/v1/admin/sites")
async def list_sites(request: web.Request) -> web.Response:
    """Every site for the root token; a site's token sees its own."""
    p = request[PRINCIPAL]
    ids = await request.app[SERVICES].sites.list_ids()
    return json_response({"sites": ids if p.role is Role.ROOT else [i for i in ids
                                                                    if i == p.site]})  # fmt: skip


@routes.get("/v1/admin/sites/{site}")
async def get_site(request: web.Request) -> web.Response:
    site = await request.app[SERVICES].sites.get(request.match_info["site"])
    return json_response(site.to_json())


@routes.patch("/v1/admin/sites/{site}")
async def update_site(request: web.Request) -> web.Response:
    edits = request.app[SERVICES].edits
    site = await edits.update_site(request.match_info["site"],
                                   await body_of(request, m.SiteUpdate))  # fmt: skip
    return json_response(site.to_json())


@routes.post("/v1/admin/sites/{site}/rotate-key")
async def rotate_key(request: web.Request) -> web.Response:
    site = await request.app[SERVICES].edits.rotate_key(request.match_info["site"])
    return json_response(site.to_json())


@routes.post("/v1/admin/sites/{site}/rotate-server-key")
async def rotate_server_key(request: web.Request) -> web.Response:
    """A new server key, in this answer only; the old one stops working."""
    site = await request.app[SERVICES].edits.rotate_server_key(request.match_info["site"])
    return json_response(site.to_json())


@routes.get("/v1/admin/sites/{site}/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    site = await services.sites.get(request.match_info["site"])
    return json_response({"tokens": await services.tokens.list(site.id)})


@routes.post("/v1/admin/sites/{site}/tokens")
async def create_token(request: web.Request) -> web.Response:
    """`{name, role}` → the token (its secret only in this answer)."""
    services = request.app[SERVICES]
    site = await services.sites.get(request.match_info["site"])
    token = await services.tokens.create(site.id, await body_of(request, m.TokenCreate))
    return json_response(token, status=201)


@routes.delete("/v1/admin/sites/{site}/tokens/{id}")
async def revoke_token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    site = await services.sites.get(request.match_info["site"])
    await services.tokens.revoke(site.id, request.match_info["id"])
    return web.Response(status=204)


@routes.get("/v1/admin/sites/{site}/visitors/{visitor}")
async def get_visitor(request: web.Request) -> web.Response:
    visitors = request.app[SERVICES].visitors
    return json_response(await visitors.read(request.match_info["site"],
                                             request.match_info["visitor"]))  # fmt: skip


@routes.get("/v1/admin/sites/{site}/visitors/{visitor}/export")
async def export_visitor(request: web.Request) -> web.Response:
    """Everything stored about the visitor (right of access)."""
    visitors = request.app[SERVICES].visitors
    return json_response(await visitors.export(request.match_info["site"],
                                               request.match_info["visitor"]))  # fmt: skip


@routes.delete("/v1/admin/sites/{site}/visitors/{visitor}")
async def delete_visitor(request: web.Request) -> web.Response:
    """Right to be forgotten: every trace of the visitor is erased, its exits emitted."""
    await request.app[SERVICES].visitors.erase(request.match_info["site"],
                                               request.match_info["visitor"],
                                               now(request))  # fmt: skip
    return web.Response(status=204)
