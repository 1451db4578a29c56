"""The only place that turns errors into status codes, always as
`{"error": {"code", "message"}}`; admin authentication and roles (the role each
operation needs is in segserver.http.operations); CORS for the public API."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from segserver import errors
from segserver.http.keys import CORS_ORIGIN, PRINCIPAL, SERVICES, SETTINGS
from segserver.http.operations import BY_ROUTE
from segserver.logs import Throttled
from segserver.trust import auth
from segserver.trust.auth import Principal, Role

log = logging.getLogger("segserver.http")
_throttled = Throttled(log)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS: list[tuple[type[errors.SegserverError], int]] = [
    (errors.RuleError, 422),
    (errors.ValidationError, 400),
    (errors.AuthError, 401),
    (errors.ForbiddenError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.RateLimited, 429),
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
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str, details: object = None,
                   headers: dict[str, str] | None = None) -> web.Response:  # fmt: skip
    body: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.Response(status=status, body=orjson.dumps({"error": body}),
                        content_type="application/json", headers=headers)  # fmt: skip


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
            # one line per route and kind of failure every 10 s: an outage fails every
            # request the same way (one line each flooded the log during a failover)
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else request.path
            _throttled.warning(f"{request.method} {route} {type(exc).__name__}",
                               "%s %s: %s", request.method, request.path, exc)  # fmt: skip
        if isinstance(exc, errors.StorageError) and (services := request.app.get(SERVICES)):
            kind = "timeout" if isinstance(exc, errors.StorageTimeout) else "error"
            services.metrics.redis_errors.labels(kind).inc()
        headers = None
        if isinstance(exc, errors.RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(status, exc.code, exc.message, exc.details, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            limit = request.app[SETTINGS].max_body_bytes
            return error_response(
                413, "body_too_large", f"request body is larger than {limit} bytes"
            )
        kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason,
                              headers=kept or None)  # fmt: skip
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
    """Everything under /v1/admin/ needs `Authorization: Bearer <admin token>` whose
    role on the path's site is at least what the operation needs (operations.py);
    a site's token never reaches another site."""
    if request.path.startswith("/v1/admin/") or request.path == "/v1/admin":
        principal = await authenticate(request)
        request[PRINCIPAL] = principal
        resource = request.match_info.route.resource
        if resource is not None:
            method = "GET" if request.method == "HEAD" else request.method
            op = BY_ROUTE.get((method, resource.canonical))
            need = op.access if op is not None and isinstance(op.access, Role) else Role.ROOT
            require(request, need)
            if op is not None and request.query:
                known = {p.name for p in op.query}
                unknown = sorted(set(request.query) - known)
                if unknown:  # a misspelt filter must not silently return everything
                    takes = ", ".join(sorted(known)) or "none"
                    raise errors.ValidationError(
                        f"{unknown[0][:64]}: unknown query parameter (this operation takes "
                        f"{takes})", code="unknown_parameter")  # fmt: skip
    return await handler(request)


async def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization")
    if not header:
        raise errors.AuthError(
            "admin API: missing Authorization: Bearer <admin token>", code="missing_admin_token"
        )
    token = auth.bearer(header)
    principal = None if token is None else await request.app[SERVICES].tokens.verify(token)
    if principal is None:
        raise errors.AuthError("admin API: wrong admin token", code="invalid_admin_token")
    return principal


def require(request: web.Request, role: Role) -> Principal:
    """The caller, if it may act with `role` on the path's site; 403 otherwise."""
    principal = request[PRINCIPAL]
    site = request.match_info.get("site")
    if not principal.may(role, site):
        where = f"site {site!r}" if site else "every site (the root token)"
        have = "root" if principal.role is Role.ROOT else (
            f"a {principal.role.label} token of site {principal.site!r}")  # fmt: skip
        raise errors.ForbiddenError(f"admin API: this needs the {role.label} role on {where}; "
                                    f"the token is {have}", code="insufficient_role")  # fmt: skip
    return principal


def is_root(request: web.Request) -> bool:
    """Does the request carry the root admin token (settings.admin_token)?"""
    token = request.app[SETTINGS].admin_token
    given = auth.bearer(request.headers.get("Authorization", ""))
    return bool(token) and given is not None and hmac.compare_digest(given.encode(),
                                                                     token.encode())  # fmt: skip


_PUBLIC_PREFIXES = ("/v1/context", "/v1/events", "/v1/visitors/")
CORS_HEADERS = "Content-Type, X-Segserver-Key"
# an over-quota answer's Retry-After is readable by the page
EXPOSED_HEADERS = "Retry-After"


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
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Vary"] = "Origin"
    return response
