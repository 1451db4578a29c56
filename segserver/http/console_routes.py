"""The campaign manager's web page at /admin (static files from segserver/admin/, no
build step) and the admin API endpoints it needs beyond the catalogue's: the site's
schema, every segment's size and sparkline, rule checking in both forms, which
campaign wins for which segment, and a visitor's explain and membership history.
Each handler parses, calls one flow and serialises (segserver/flows/console.py,
segserver/flows/winners.py); docs/admin.md documents the answers."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from segserver.api import console as m
from segserver.errors import ValidationError
from segserver.flows.console import MAX_POINTS
from segserver.flows.pageview import MAX_PLACEMENTS
from segserver.http.keys import SERVICES
from segserver.http.request import body_of, json_response, now, query_number
from segserver.jobs.history import DAY

ADMIN_DIR = Path(__file__).resolve().parent.parent / "admin"
S = "/v1/admin/sites/{site}"
# The page's files change with the package: revalidated on every load (304s, a few
# KB, local), so an upgrade never serves a stale mix of modules.
_CACHE = {"Cache-Control": "no-cache"}

#: The API (documented in /openapi.json, segserver/http/operations.py) and the page.
routes = web.RouteTableDef()
page_routes = web.RouteTableDef()


# -- the page ---------------------------------------------------------------------------


@page_routes.get("/admin")
async def admin_root(_: web.Request) -> web.Response:
    raise web.HTTPFound("/admin/")


@page_routes.get("/admin/")
async def admin_index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(ADMIN_DIR / "index.html", headers=_CACHE)


@page_routes.get("/admin/{path:[a-z0-9_/-]+\\.(js|css|html|svg|txt)}")
async def admin_file(request: web.Request) -> web.FileResponse:
    """A file of the page; names are lower-case paths inside segserver/admin/ only."""
    rel = request.match_info["path"]
    path = (ADMIN_DIR / rel).resolve()
    if ".." in rel.split("/") or not path.is_relative_to(ADMIN_DIR) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=_CACHE)


# -- the API the page needs -------------------------------------------------------------


@routes.get(S + "/schema")
async def schema(request: web.Request) -> web.Response:
    """Attributes (kind, window, source, operators, known values) and segments."""
    console = request.app[SERVICES].console
    return json_response(await console.schema(request.match_info["site"]))


@routes.get(S + "/sizes")
async def sizes(request: web.Request) -> web.Response:
    """`?since=` (epoch seconds, default 30 days ago) `&points=` (default 30): every
    counted segment's size now and its size history thinned to `points`."""
    at = now(request)
    since = query_number(request, "since", at - 30 * DAY, 0, at)
    points = int(query_number(request, "points", 30, 2, MAX_POINTS))
    console = request.app[SERVICES].console
    return json_response(await console.sizes(request.match_info["site"], since, at, points))


@routes.post(S + "/rules/check")
async def check_rule(request: web.Request) -> web.Response:
    """`{"rule"}` or `{"text"}` (+ `segment` being edited) → both forms, or 422."""
    body = await body_of(request, m.RuleCheckIn)
    console = request.app[SERVICES].console
    return json_response(await console.check_rule(request.match_info["site"], body))


@routes.get(S + "/winners")
async def winners(request: web.Request) -> web.Response:
    """Per placement: campaigns by priority with eligible, wins and lost_to; segments
    named by their audiences with how their members split between the winners."""
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    return json_response(await services.winners.table(ctx, now(request)))


@routes.get(S + "/visitors/{visitor}/explain")
async def explain(request: web.Request) -> web.Response:
    """`?placements=a,b` (default: every placement): segments and decisions now and
    why, without recording anything."""
    raw = request.query.get("placements")
    placements = None if raw is None else [p for p in raw.split(",") if p]
    if placements is not None and (
        len(placements) > MAX_PLACEMENTS or not all(len(p) <= 64 for p in placements)
    ):
        raise ValidationError(f"placements: at most {MAX_PLACEMENTS} ids")
    console = request.app[SERVICES].console
    return json_response(
        await console.explain(
            request.match_info["site"], request.match_info["visitor"], placements, now(request)
        )
    )


@routes.get(S + "/visitors/{visitor}/history")
async def history(request: web.Request) -> web.Response:
    """Stored membership changes (entered/exited, segment, time, cause) and bits."""
    console = request.app[SERVICES].console
    return json_response(
        await console.history(request.match_info["site"], request.match_info["visitor"])
    )
