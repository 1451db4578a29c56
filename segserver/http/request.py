"""Reading requests: JSON bodies, the site of a public request, the clock."""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp import web

from segserver.catalogue.runtime import SiteContext
from segserver.errors import AuthError, ForbiddenError, ValidationError
from segserver.http.keys import CLOCK, CORS_ORIGIN, SERVICES


async def json_body(request: web.Request) -> Any:
    """The parsed JSON body; 400 if malformed, 413 (raised by aiohttp) if too large."""
    raw = await request.read()
    if not raw:
        raise ValidationError("body: empty; expected JSON", code="malformed_json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN, Infinity and numbers past a double; the standard parser
        # takes them as non-finite floats, so validation can name the field.
        try:
            return json.loads(raw)
        except ValueError:
            raise ValidationError(f"body: malformed JSON ({exc})", code="malformed_json") from None


def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # a NumPy scalar (explanations carry compared values)
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return web.Response(status=status, body=body, content_type="application/json")


def now(request: web.Request) -> float:
    return float(request.app[CLOCK]())


async def site_of(request: web.Request, body: Any = None) -> SiteContext:
    """The site of a public request, from `X-Segserver-Key` or `?site_key=`.

    401 without a key or with a wrong one; 403 when the request names another site
    (`?site=` or `"site"` in the body) or comes from an origin the site does not allow.
    """
    key = request.headers.get("X-Segserver-Key") or request.query.get("site_key")
    if not key:
        raise AuthError(
            "site key: missing (X-Segserver-Key header or site_key parameter)",
            code="missing_site_key",
        )
    ctx = await request.app[SERVICES].runtime.by_key(key)
    named = request.query.get("site")
    if named is None and isinstance(body, dict) and isinstance(body.get("site"), str):
        named = body["site"]
    if named is not None and named != ctx.site.id:
        raise ForbiddenError(
            f"site: this key belongs to site {ctx.site.id!r}, not {named!r}", code="site_mismatch"
        )
    origin = request.headers.get("Origin")
    if origin:
        if not ctx.site.allows_origin(origin):
            raise ForbiddenError(
                f"origin {origin!r} is not allowed for this site", code="origin_not_allowed"
            )
        request[CORS_ORIGIN] = origin
    return ctx
