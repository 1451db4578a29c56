"""The only place that turns errors into status codes, always as
`{"error": {"code", "message"}}`; admin authentication; CORS for the public API."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from segserver import errors
from segserver.http.keys import CORS_ORIGIN, SERVICES, SETTINGS

log = logging.getLogger("segserver.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS: list[tuple[type[errors.SegserverError], int]] = [
    (errors.RuleError, 422),
    (errors.ValidationError, 400),
    (errors.AuthError, 401),
    (errors.ForbiddenError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.StorageError, 503),
]
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, details: object = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.Response(
        status=status, body=orjson.dumps({"error": body}), content_type="application/json"
    )


def status_of(exc: errors.SegserverError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.SegserverError as exc:
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        if isinstance(exc, errors.StorageError) and (services := request.app.get(SERVICES)):
            kind = "timeout" if isinstance(exc, errors.StorageTimeout) else "error"
            services.metrics.redis_errors.labels(kind).inc()
        return error_response(status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            limit = request.app[SETTINGS].max_body_bytes
            return error_response(
                413, "body_too_large", f"request body is larger than {limit} bytes"
            )
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Server time per request, by route template and status class."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        services = request.app.get(SERVICES)
        if services is not None:
            services.metrics.requests.labels(name, f"{status // 100}xx").observe(
                time.perf_counter() - started)  # fmt: skip


@web.middleware
async def admin_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything under /v1/admin/ needs `Authorization: Bearer <admin token>`."""
    if request.path.startswith("/v1/admin/") or request.path == "/v1/admin":
        check_admin(request)
    return await handler(request)


def is_admin(request: web.Request) -> bool:
    token = request.app[SETTINGS].admin_token
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def check_admin(request: web.Request) -> None:
    if not request.headers.get("Authorization"):
        raise errors.AuthError(
            "admin API: missing Authorization: Bearer <admin token>", code="missing_admin_token"
        )
    if not is_admin(request):
        raise errors.AuthError("admin API: wrong admin token", code="invalid_admin_token")


_PUBLIC_PREFIXES = ("/v1/context", "/v1/events", "/v1/visitors/")
CORS_HEADERS = "Content-Type, X-Segserver-Key"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Preflights of the public API are answered for any origin (a preflight carries
    no site key); the real request is then checked against the site's allow-list by
    the handler (`http.public.site_of`), which sets `request["cors_origin"]`."""
    public = request.path.startswith(_PUBLIC_PREFIXES)
    origin = request.headers.get("Origin")
    if public and request.method == "OPTIONS" and origin:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "86400",
                "Vary": "Origin",
            },
        )
    response = await handler(request)
    allowed = request.get(CORS_ORIGIN)
    if public and origin and not allowed and response.status >= 400:
        # an error before the site was known (malformed body, bad key): let the page
        # read it rather than see a network error; it carries no visitor data
        allowed = origin
    if public and allowed:
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Vary"] = "Origin"
    return response
