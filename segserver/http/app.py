"""`create_app(settings) -> web.Application`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from segserver import engine
from segserver.config import Settings
from segserver.errors import StorageError
from segserver.http import (
    admin,
    analytics_routes,
    console_routes,
    decisions_routes,
    demo_routes,
    jobs_routes,
    openapi,
    ops,
    public,
    results_routes,
    segments_routes,
    triggers_routes,
)
from segserver.http.keys import CLOCK, REDIS_URL, SERVICES, SETTINGS
from segserver.http.middlewares import (
    admin_auth_middleware,
    cors_middleware,
    error_middleware,
    metrics_middleware,
)
from segserver.http.webhooks import WebhookClient
from segserver.jobs.loop import LagProbe, Loops
from segserver.wiring import build_services

log = logging.getLogger("segserver.http")


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Compile (or load from the on-disk cache) every rule kernel in a thread before
    # the first request: a JIT compile inside the event loop stalls every request.
    await asyncio.to_thread(engine.warm, settings.kernel_cache_dir)
    webhooks = WebhookClient(connections=settings.trigger_concurrency)
    services = build_services(settings, url=app[REDIS_URL], clock=app[CLOCK],
                              sender=webhooks.post_json)  # fmt: skip
    try:
        await services.scripts.load_all()
    except StorageError as exc:
        # Redis (or one cluster primary) is out right now: serve what can be served
        # (degraded answers meanwhile); NOSCRIPT reloads each script where it runs,
        # and /readyz loads them on every primary that answers.
        log.warning("starting without every Lua script loaded: %s", exc.message)
    app[SERVICES] = services
    try:
        yield
    finally:
        await services.recomputer.cancel()
        await services.close()
        await webhooks.close()


async def _loops_ctx(app: web.Application) -> AsyncIterator[None]:
    """The supervisor of every background loop of this process (segserver.jobs.loop)
    and the probe of the event loop's lag; the loops' own contexts follow."""
    settings, metrics = app[SETTINGS], app[SERVICES].metrics
    loops = Loops(metrics, stale_after=settings.loop_stale_seconds,
                  backoff_max=settings.loop_backoff_max_seconds)  # fmt: skip
    app[ops.LOOPS] = loops
    probe = LagProbe(metrics.loop_lag.observe)
    probe.start(asyncio.get_running_loop())
    yield
    await loops.stop_all()
    probe.stop()


async def _jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bulk jobs left by a dead process (lease expired) or stopped by a shutdown are
    claimed and resumed here, at start and then every `jobs_poll_seconds`."""
    poll = app[SETTINGS].jobs_poll_seconds
    if poll <= 0:
        yield
        return
    services, loops = app[SERVICES], app[ops.LOOPS]
    recomputer = services.recomputer

    async def resume() -> bool:
        await recomputer.resume_orphans(await services.runtime.sites.list_ids())
        return False

    loops.start("jobs", resume, pause=poll)
    yield
    await loops.stop("jobs")


async def _sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Clean-up after profiles that expired by TTL, in the background."""
    per_second = app[SETTINGS].expired_sweep_per_second
    if per_second <= 0:
        yield
        return
    sweep, clock, loops = app[SERVICES].sweep, app[CLOCK], app[ops.LOOPS]
    loops.start("sweep", lambda: sweep.run_round(clock, per_second), pause=1.0)
    yield
    await loops.stop("sweep")


async def _quota_ctx(app: web.Application) -> AsyncIterator[None]:
    """Site-wide quotas: this process' counts synced with Redis in the background."""
    interval = app[SETTINGS].quota_sync_seconds
    if interval <= 0:
        yield
        return
    sync, clock, loops = app[SERVICES].quota_sync, app[CLOCK], app[ops.LOOPS]
    loops.start("quotas", lambda: sync.run_round(clock), pause=interval)
    yield
    await loops.stop("quotas")


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Exact expiry in the background of every server process."""
    interval = app[SETTINGS].expiry_interval_seconds
    if interval <= 0:
        yield
        return
    expiry, clock, loops = app[SERVICES].expiry, app[CLOCK], app[ops.LOOPS]
    loops.start("expiry", lambda: expiry.run_round(clock), pause=interval)
    yield
    await loops.stop("expiry")


def create_app(
    settings: Settings, *, redis_url: str | None = None, clock: Callable[[], float] = time.time
) -> web.Application:
    """The whole HTTP application. `redis_url` overrides settings.redis_url (the
    embedded Redis' socket); `clock` gives epoch seconds (tests inject one)."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, cors_middleware, error_middleware, admin_auth_middleware],
    )
    app[SETTINGS] = settings
    app[REDIS_URL] = redis_url or settings.redis_url
    app[CLOCK] = clock
    app.cleanup_ctx.append(_services_ctx)
    app.cleanup_ctx.append(_loops_ctx)
    app.cleanup_ctx.append(_jobs_ctx)
    app.cleanup_ctx.append(_scheduler_ctx)
    app.cleanup_ctx.append(_quota_ctx)
    app.cleanup_ctx.append(_sweep_ctx)
    app.cleanup_ctx.append(analytics_routes.history_ctx)
    app.cleanup_ctx.append(triggers_routes.triggers_ctx)
    app.add_routes(ops.routes)
    app.add_routes(openapi.routes)
    app.add_routes(public.routes)
    app.add_routes(admin.routes)
    app.add_routes(segments_routes.routes)
    app.add_routes(jobs_routes.routes)
    app.add_routes(triggers_routes.routes)
    app.add_routes(decisions_routes.routes)
    app.add_routes(demo_routes.routes)
    app.add_routes(analytics_routes.routes)
    app.add_routes(results_routes.routes)
    app.add_routes(console_routes.routes)
    app.add_routes(console_routes.page_routes)
    ops.add_static(app)
    if settings.bench_ceiling_route:
        ops.add_bench_routes(app)
    return app
