"""`create_app(settings) -> web.Application`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from segserver.config import Settings
from segserver.http import admin, ops, public
from segserver.http.keys import CLOCK, REDIS_URL, SERVICES, SETTINGS
from segserver.http.middlewares import admin_auth_middleware, cors_middleware, error_middleware
from segserver.services import Services


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = Services.build(app[SETTINGS], app[REDIS_URL], app[CLOCK])
    await services.scripts.load_all()
    app[SERVICES] = services
    yield
    await services.close()


def create_app(
    settings: Settings, *, redis_url: str | None = None, clock: Callable[[], float] = time.time
) -> web.Application:
    """The whole HTTP application. `redis_url` overrides settings.redis_url (the
    embedded Redis' socket); `clock` gives epoch seconds (tests inject one)."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[cors_middleware, error_middleware, admin_auth_middleware],
    )
    app[SETTINGS] = settings
    app[REDIS_URL] = redis_url or settings.redis_url
    app[CLOCK] = clock
    app.cleanup_ctx.append(_services_ctx)
    app.add_routes(ops.routes)
    app.add_routes(public.routes)
    app.add_routes(admin.routes)
    ops.add_static(app)
    return app
