"""The aiohttp application: routes, handlers and middlewares. The only package
that imports aiohttp (the CLI's server start-up aside)."""

from segserver.http.app import create_app

__all__ = ["create_app"]
