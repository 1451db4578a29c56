"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

import os

from aiohttp import web

from segserver.http.keys import SERVICES
from segserver.http.request import json_response
from segserver.jobs.loop import Loops
from segserver.resources import shipped_dir
from segserver.storage.client import ping

routes = web.RouteTableDef()
#: The supervisor of this process' background loops (set by create_app's contexts).
LOOPS = web.AppKey("loops", Loops)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up (says nothing about Redis); `pid` tells workers apart."""
    return json_response({"status": "ok", "pid": os.getpid()})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: Redis answers, every Lua script is loaded and no background
    loop is stale (no successful round for longer than its interval plus
    `loop_stale_seconds`); `stale` names the stale ones, `loops` tells about each."""
    services = request.app[SERVICES]
    redis_ok = await ping(services.clients.raw)
    scripts_ok = redis_ok and await services.scripts.loaded()
    if redis_ok and not scripts_ok:
        try:
            await services.scripts.load_all()
            scripts_ok = await services.scripts.loaded()
        except Exception:
            scripts_ok = False
    loops = request.app.get(LOOPS)
    stale = loops.stale() if loops is not None else []
    ok = redis_ok and scripts_ok and not stale
    now = loops.clock() if loops is not None else 0.0
    states = {
        s.name: {"last_success_seconds_ago": round(s.age(now), 3), "failures": s.failures,
                 "error": s.error or None}
        for s in (loops.states() if loops is not None else [])
    }  # fmt: skip
    return json_response(
        {"status": "ready" if ok else "not_ready", "redis": redis_ok, "scripts": scripts_ok,
         "stale": stale, "loops": states},
        status=200 if ok else 503,
    )  # fmt: skip


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this process' metrics."""
    body = request.app[SERVICES].metrics.exposition()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


_CEILING = b'{"visitor_id":"v","segments":["everyone"],"decisions":{},"degraded":false}'


async def ceiling(request: web.Request) -> web.Response:
    """A fixed small JSON: what aiohttp alone costs per request (benchmarks only)."""
    await request.read()
    return web.Response(body=_CEILING, content_type="application/json")


def add_bench_routes(app: web.Application) -> None:
    app.router.add_route("*", "/_bench/ceiling", ceiling)


def add_static(app: web.Application) -> None:
    """The browser SDK's build at /sdk/ (segserver.js, segserver.esm.js)."""
    try:
        sdk = shipped_dir("sdk")
    except (FileNotFoundError, KeyError):
        return  # not built: the SDK is simply not served (scripts/setup builds it)
    app.router.add_static("/sdk/", sdk, append_version=False)
