"""The e2e tests' server: the real app on a real port (settings from SEGSERVER_*),
with the demo site, the demo campaigns and the demo shop's routes.

`segserver serve --demo` does the same once http/app.py adds the demo routes and the
run command calls install_demo_campaigns; this launcher adds them itself when they
are missing, so the tests do not depend on that wiring. Prints the demo site key.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from segserver import engine
from segserver.config import load_settings
from segserver.demo import ensure_demo_site
from segserver.demo.campaigns import install_demo_campaigns
from segserver.http import create_app, demo_routes
from segserver.wiring import open_services


async def _prepare(url: str) -> str:
    settings = load_settings()
    async with open_services(settings, url) as services:
        await services.scripts.load_all()
        site = await ensure_demo_site(services)
        await install_demo_campaigns(services, site.id)
        return site.site_key


def main() -> None:
    settings = load_settings()
    engine.warm(settings.kernel_cache_dir)
    key = asyncio.run(_prepare(settings.redis_url))
    print(f"demo site key {key}", flush=True)
    app = create_app(settings)
    if not any(r.canonical == "/demo/config.js" for r in app.router.resources()):
        app.add_routes(demo_routes.routes)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
