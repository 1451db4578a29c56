"""Reading requests: JSON bodies, the site of a public request, the clock."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
from aiohttp import web

from segserver.api import validate
from segserver.catalogue.runtime import SiteContext
from segserver.errors import AuthError, ForbiddenError, ValidationError
from segserver.http.keys import CLOCK, CORS_ORIGIN, SERVICES, TRUSTED
from segserver.trust import auth

#: Deepest nesting of arrays and objects a body may have (docs/security.md): room for
#: a rule at its own bound (24 groups, segserver.dsl.validate.MAX_DEPTH: ~50 levels).
MAX_DEPTH = 64


def parse_json(raw: bytes) -> Any:
    """The one parser of every request body (orjson): strict JSON only. It refuses NaN,
    Infinity, numbers past a double, lone surrogates and invalid UTF-8 (so nothing a
    later encoder chokes on can be stored), and nesting deeper than MAX_DEPTH; 400."""
    if not raw:
        raise ValidationError("body: empty; expected JSON", code="malformed_json")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        where = path_at(raw.decode("utf-8", "replace"), exc.pos)
        raise ValidationError(f"{where}: malformed JSON ({exc.msg})",
                              code="malformed_json") from None  # fmt: skip
    # Counting brackets is C speed (~0.1 µs for a page view); the walk runs only for
    # bodies that could be too deep at all.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        check_depth(value)
    return value


def path_at(text: str, pos: int) -> str:
    """The field path (`events[0].properties.value`) at character `pos` of a JSON text
    that failed to parse there, so its error names the field ("body" if none)."""
    stack: list[list[Any]] = []  # [kind "{" or "[", key or index]
    i, key, end = 0, None, min(pos, len(text))
    while i < end:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            key = text[i + 1 : j]
            i = j
        elif c in "{[":
            stack.append([c, None if c == "{" else 0])
        elif c in "}]" and stack:
            stack.pop()
        elif c == ":" and stack:
            stack[-1][1] = key
        elif c == "," and stack and stack[-1][0] == "[":
            stack[-1][1] += 1
        i += 1
    path = ""
    for kind, at in stack:
        if kind == "[":
            path += f"[{at}]"
        elif at is not None:
            path += f".{at}" if path else str(at)
    return path or "body"


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """ValidationError if arrays and objects nest deeper than `limit` (iterative: a
    deep value never reaches Python's recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            raise ValidationError(f"body: nested deeper than {limit} levels", code="too_deep")
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


async def json_body(request: web.Request) -> Any:
    """The parsed JSON body (`parse_json`); 413 (raised by aiohttp) if too large."""
    return parse_json(await request.read())


async def body_of(request: web.Request, model: type[pydantic.BaseModel]) -> Any:
    """The JSON body, checked against `model` (the one the OpenAPI document shows;
    400 naming the field). The services take the plain JSON and check its meaning."""
    body = await json_body(request)
    validate(model, body)
    return body


def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # a NumPy scalar (explanations carry compared values)
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return web.Response(status=status, body=body, content_type="application/json")


def query_number(request: web.Request, name: str, default: float, lo: float, hi: float, *,
                 whole: bool = False) -> float:  # fmt: skip
    """A numeric query parameter within [lo, hi] (a whole number when `whole`), or
    `default` when absent; 400 naming the parameter otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        kind = "a whole number" if whole else "a number"
        raise ValidationError(f"{name}: must be {kind} from {lo:g} to {hi:g}")
    return value


def now(request: web.Request) -> float:
    return float(request.app[CLOCK]())


async def site_of(request: web.Request, body: Any = None, *,
                  server_key_only: bool = False) -> SiteContext:  # fmt: skip
    """The site of a public request: from the secret server key (`Authorization: Bearer
    srv_...`, sets request[TRUSTED]) or the public site key (`X-Segserver-Key` or
    `?site_key=`).

    401 without a key or with a wrong one; 403 with a public key where the server key is
    needed (`server_key_only`), when the request names another site (`?site=` or
    `"site"` in the body) or comes from an origin the site does not allow.
    """
    runtime = request.app[SERVICES].runtime
    token = auth.bearer(request.headers.get("Authorization", ""))
    if token is not None and token.startswith("srv_"):
        ctx = await runtime.by_server_key(token)
        request[TRUSTED] = True
    else:
        key = request.headers.get("X-Segserver-Key") or request.query.get("site_key")
        if not key:
            raise AuthError(
                "site key: missing (X-Segserver-Key header or site_key parameter)"
                + ("; this needs the server key" if server_key_only else ""),
                code="missing_site_key",
            )
        ctx = await runtime.by_key(key)
        if server_key_only:
            raise ForbiddenError("this needs the site's server key (Authorization: Bearer "
                                 "<server key>), not the public site key",
                                 code="server_key_required")  # fmt: skip
        request[TRUSTED] = False
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


def is_trusted(request: web.Request) -> bool:
    """Did `site_of` find the site's server key on this request?"""
    return bool(request.get(TRUSTED, False))
