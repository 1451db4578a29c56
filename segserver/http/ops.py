"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

import os

from aiohttp import web

from segserver.http.keys import SERVICES
from segserver.http.request import json_response
from segserver.jobs.loop import Loops
from segserver.resources import shipped_dir
from segserver.storage.client import probe

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
    `loop_stale_seconds`); `stale` names the stale ones, `loops` tells about each.

    `redis` is "ok", "partial" or "down"; `unreachable` names the primaries that did
    not answer. Partial (a Redis Cluster primary is out, its replica not yet promoted)
    is still 200: this process serves every visitor on the other primaries in full and
    the others degraded, exactly as any other process would, so a load balancer taking
    it out of rotation would only move the same answers elsewhere (docs/faults.md).
    Only "down" (no node answers) makes it 503."""
    services = request.app[SERVICES]
    scripts = services.scripts
    reach = await probe(services.clients, list(scripts.sources.values()),
                        [s.sha for s in scripts.scripts.values()])  # fmt: skip
    loops = request.app.get(LOOPS)
    stale = loops.stale() if loops is not None else []
    ok = reach.state != "down" and reach.scripts and not stale
    now = loops.clock() if loops is not None else 0.0
    states = {
        s.name: {"last_success_seconds_ago": round(s.age(now), 3), "failures": s.failures,
                 "error": s.error or None}
        for s in (loops.states() if loops is not None else [])
    }  # fmt: skip
    return json_response(
        {"status": "ready" if ok else "not_ready", "redis": reach.state,
         "unreachable": reach.unreachable, "scripts": reach.scripts, "stale": stale,
         "loops": states},
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
