"""The demo shop at /demo: static pages from segserver/demo/shop/, /demo/config.js,
which hands the page the demo site's public key (the site is created by
`segserver serve --demo`, so its key is only known at run time), and /demo/checkout,
the demo shop's "back end": a purchase is a trusted event (docs/security.md), so the
page cannot send it with the public key; a real shop sends it from its server with
the server key after checking the order, this demo takes the page's word."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiohttp import web

from segserver.demo import DEMO_SITE
from segserver.errors import NotFoundError, ValidationError
from segserver.http.keys import SERVICES
from segserver.http.request import json_body, json_response, now

SHOP_DIR = Path(__file__).resolve().parent.parent / "demo" / "shop"
_FILE = re.compile(r"[a-z][a-z0-9_-]{0,40}\.(html|css|js)")
_TYPES = {"html": "text/html", "css": "text/css", "js": "text/javascript"}
# Revalidated on every load: the pages change with the package (a few KB, local).
_CACHE = "no-cache"

routes = web.RouteTableDef()


@routes.get("/demo")
async def demo_root(_: web.Request) -> web.Response:
    raise web.HTTPFound("/demo/")


@routes.get("/demo/")
async def demo_index(_: web.Request) -> web.Response:
    return _file("index.html")


@routes.get("/demo/config.js")
async def demo_config(request: web.Request) -> web.Response:
    """`window.segserverDemo = {siteKey, endpoint}`; without a demo site, a null key
    (the page says to start the server with --demo)."""
    services = request.app[SERVICES]
    try:
        site = await services.sites.get(DEMO_SITE)
        key: str | None = site.site_key
    except NotFoundError:
        key = None
    origin = f"{request.scheme}://{request.host}"
    body = f"window.segserverDemo = {json.dumps({'siteKey': key, 'endpoint': origin})};\n"
    return web.Response(text=body, content_type="text/javascript",
                        headers={"Cache-Control": "no-store"})  # fmt: skip


@routes.post("/demo/checkout")
async def demo_checkout(request: web.Request) -> web.Response:
    """`{visitor_id, value, order_id, items}` → the purchase, stored as the shop's back
    end would store it (202 with the event's result)."""
    services = request.app[SERVICES]
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) - {"visitor_id", "value", "order_id", "items"}:
        raise ValidationError("body: {visitor_id, value, order_id, items}")
    ctx = await services.runtime.get(DEMO_SITE)
    event = {
        "visitor_id": body.get("visitor_id"),
        "type": "purchase",
        "properties": {k: body[k] for k in ("value", "order_id", "items") if k in body},
    }
    answer = await services.events.ingest(ctx, [event], now(request), trusted=True)
    return json_response(answer.to_json(), status=202)


@routes.get("/demo/{name}")
async def demo_file(request: web.Request) -> web.Response:
    return _file(request.match_info["name"])


def _file(name: str) -> web.Response:
    match = _FILE.fullmatch(name)
    path = SHOP_DIR / name
    if match is None or not path.is_file():
        raise NotFoundError(f"/demo/{name} does not exist")
    return web.Response(body=path.read_bytes(), content_type=_TYPES[match.group(1)],
                        charset="utf-8", headers={"Cache-Control": _CACHE})  # fmt: skip
