"""GET /openapi.json: the OpenAPI 3.1 document, generated from the operation table
(segserver.http.operations) and the pydantic models that validate the requests
(segserver.api), so it cannot drift from what the server does."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from segserver import __version__
from segserver.api.public import EventIn
from segserver.api.types import ErrorBody
from segserver.http.operations import OPEN, OPS, PUBLIC, SERVER, Op
from segserver.http.request import MAX_DEPTH
from segserver.profile.events import builtin_event_types
from segserver.profile.identity import SITE_ID_RE, VISITOR_ID_RE
from segserver.trust.auth import Role

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"

_SECURITY = {
    "siteKey": {"type": "apiKey", "in": "header", "name": "X-Segserver-Key",
                "description": "the site's public key (sk_<site>_<hex>): in every page"},
    "siteKeyQuery": {"type": "apiKey", "in": "query", "name": "site_key",
                     "description": "the public key as a parameter (beacons cannot set "
                     "headers)"},
    "serverKey": {"type": "http", "scheme": "bearer", "bearerFormat": "srv_<site>_<hex>",
                  "description": "the site's secret server key, for its shop back end: "
                  "every event type, identify, attributes, reading a visitor"},
    "adminToken": {"type": "http", "scheme": "bearer", "bearerFormat":
                   "root token, or sat_<site>.<id>.<secret>",
                   "description": "the root token (settings.admin_token: every site) or a "
                   "per-site token with a role: viewer reads everything of its site, "
                   "editor changes the catalogue, admin also keys, tokens, settings and "
                   "erasure. Each operation's `x-segserver-role` is the least role it "
                   "needs."},
}  # fmt: skip
_ERRORS = {
    400: "invalid input: the message names the field",
    401: "missing or wrong credentials",
    403: "credentials that do not grant this (role, site, origin, server key needed)",
    404: "no such site or item",
    409: "conflict: stale version, already exists, or still referenced (named)",
    413: "body larger than max_body_bytes",
    422: "a rule that does not compile (the message names its JSON path)",
    429: "over a quota; Retry-After says when to try again",
    503: "Redis failed or did not answer",
}
_PATH_PARAMS = {
    "site": {"type": "string", "pattern": SITE_ID_RE.pattern},
    "visitor": {"type": "string", "pattern": VISITOR_ID_RE.pattern},
}


def _models() -> list[tuple[type[BaseModel], Any]]:
    seen: list[tuple[type[BaseModel], Any]] = [
        (ErrorBody, "serialization"),
        (EventIn, "validation"),
    ]
    for op in OPS:
        if op.body is not None:
            seen.append((op.body, "validation"))
        if isinstance(op.answer, type):
            seen.append((op.answer, "serialization"))
    return list(dict.fromkeys(seen))


def _security(op: Op) -> list[dict[str, list[str]]]:
    if op.access == PUBLIC:
        return [{"siteKey": []}, {"siteKeyQuery": []}, {"serverKey": []}]
    if op.access == SERVER:
        return [{"serverKey": []}]
    if op.access == OPEN:
        return []
    return [{"adminToken": []}]


def _operation(op: Op, refs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag],
                           "operationId": _operation_id(op), "security": _security(op)}  # fmt: skip
    if op.description:
        out["description"] = op.description
    if isinstance(op.access, Role):
        out["x-segserver-role"] = op.access.label
    params = [{"name": name, "in": "path", "required": True,
               "schema": _PATH_PARAMS.get(name, {"type": "string", "minLength": 1})}
              for name in re.findall(r"{(\w+)}", op.path)]  # fmt: skip
    params += [{"name": p.name, "in": "query", "required": p.required, "schema": p.schema,
                **({"description": p.description} if p.description else {})}
               for p in op.query]  # fmt: skip
    if params:
        out["parameters"] = params
    if op.body is not None:
        schema = refs[(op.body, "validation")]
        if op.path == "/v1/events":  # a bare list of events is taken too
            schema = {"oneOf": [schema, {"type": "array", "minItems": 1, "maxItems": 100,
                                         "description": "a bare list of events"}]}  # fmt: skip
        content: dict[str, Any] = {"application/json": {"schema": schema}}
        if op.csv_body:
            content["text/csv"] = {"schema": {"type": "string"}}
        out["requestBody"] = {"required": not op.body_optional, "content": content}
    responses: dict[str, Any] = {}
    if op.answer is None:
        responses[str(op.ok)] = {"description": "no content" if op.ok == 204 else "done"}
        if op.ok != 204:
            responses[str(op.ok)]["content"] = {"application/json": {"schema": {
                "type": "object"}}}  # fmt: skip
    elif op.answer == "csv":
        csv = {"text/csv": {"schema": {"type": "string"}}}
        responses[str(op.ok)] = {
            "description": "CSV (a cell a spreadsheet would read as a formula is prefixed with ')",
            "content": csv,
        }
    elif op.answer == "text":
        responses[str(op.ok)] = {
            "description": "text",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    else:
        assert isinstance(op.answer, type)
        responses[str(op.ok)] = {"description": op.answer.__doc__ or "done",
                                 "content": {"application/json": {
                                     "schema": refs[(op.answer, "serialization")]}}}  # fmt: skip
    error = {"content": {"application/json": {"schema": refs[(ErrorBody, "serialization")]}}}
    for status in _errors_of(op):
        responses[str(status)] = {"description": _ERRORS[status], **error}
    out["responses"] = responses
    return out


def _errors_of(op: Op) -> list[int]:
    found = set(op.errors)
    if op.access != OPEN:
        found |= {401, 403}
    if op.body is not None or op.query or "{" in op.path:
        found.add(400)
    if op.body is not None:
        found.add(413)
    if "{" in op.path:
        found.add(404)
    if op.access in (PUBLIC, SERVER):
        found |= {400, 429}
    if op.path not in ("/healthz", "/openapi.json", "/metrics"):
        found.add(503)
    return sorted(found)


def _operation_id(op: Op) -> str:
    words = re.sub(r"[{}]", "", op.path.removeprefix("/v1/")).replace(".", "_")
    return f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', words).strip('_')}"


def _event_types() -> dict[str, Any]:
    """The built-in event types: properties (as events.toml declares them) and whether
    only the server key may send them."""
    return {name: {"trusted": t.trusted, "properties": {p: dict(spec) for p, spec
                                                         in t.properties.items()}}
            for name, t in sorted(builtin_event_types().items())}  # fmt: skip


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once per process)."""
    models = _models()
    refs, defs = models_json_schema(models, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "segserver", "version": __version__,
                 "description": "Real-time segments and decisions. Errors are always "
                 '`{"error": {"code", "message"}}`. Request bodies are strict JSON (no '
                 f"NaN or Infinity, no lone surrogates), nested at most {MAX_DEPTH} levels. "
                 "Times are epoch seconds unless a field says ISO 8601."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": _SECURITY},
        "x-event-types": _event_types(),
    }  # fmt: skip


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_encoded(), content_type="application/json")


@cache
def _encoded() -> bytes:
    return orjson.dumps(document())
