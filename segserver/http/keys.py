"""Typed application state (aiohttp AppKeys)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from segserver.config import Settings
from segserver.trust.auth import Principal
from segserver.wiring import Services

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
# Where the app's Redis is; set by create_app (embedded socket, or settings.redis_url).
REDIS_URL = web.AppKey("redis_url", str)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
# Per request: the Origin the site allowed (set by http.request.site_of), echoed by CORS.
CORS_ORIGIN = web.RequestKey("cors_origin", str)
# Per request: the admin caller (set by the admin middleware), and whether a public
# request carries the site's server key (set by http.request.site_of).
PRINCIPAL = web.RequestKey("principal", Principal)
TRUSTED = web.RequestKey("trusted", bool)
