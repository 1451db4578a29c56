"""Admin API: segments of a site (catalogue, versions)."""

from __future__ import annotations

from aiohttp import web

from segserver.catalogue.segments import Segment, list_segments
from segserver.errors import NotFoundError, ValidationError
from segserver.http.jobs_routes import start_recompute
from segserver.http.keys import SERVICES
from segserver.http.request import json_body, json_response, now

routes = web.RouteTableDef()
BASE = "/v1/admin/sites/{site}/segments"


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name}: must be a whole number") from None
    if not lo <= value <= hi:
        raise ValidationError(f"{name}: must be between {lo} and {hi}")
    return value


@routes.get(BASE)
async def list_(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    q = request.query
    page, per_page = _int(request, "page", 1, 1, 100_000), _int(request, "per_page", 50, 1, 500)
    found, total = list_segments(
        await services.segments.all(ctx.site.id), q=q.get("q"), status=q.get("status"),
        type_=q.get("type"), tag=q.get("tag"), sort=q.get("sort", "id"), page=page,
        per_page=per_page,
    )  # fmt: skip
    return json_response({"segments": [s.to_json() for s in found], "total": total,
                          "page": page, "per_page": per_page})  # fmt: skip


@routes.post(BASE)
async def create(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    seg = await services.segments.create(
        ctx.site.id, await json_body(request), ctx.data.schema.layout, ctx.data.vocab
    )
    services.runtime.forget(ctx.site.id)
    out = seg.to_json()
    if seg.evaluated:
        out["recompute_job"] = await start_recompute(services, ctx.site.id, now(request), "edit")
    return json_response(out, status=201)


@routes.get(BASE + "/{segment}")
async def get(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    seg = await services.segments.get(request.match_info["site"], request.match_info["segment"])
    return json_response(seg.to_json())


@routes.put(BASE + "/{segment}")
@routes.patch(BASE + "/{segment}")
async def update(request: web.Request) -> web.Response:
    """Change a segment. The body carries `version`, the version the editor saw."""
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    sid = request.match_info["segment"]
    before = await services.segments.get(ctx.site.id, sid)
    seg = await services.segments.update(
        ctx.site.id, sid, await json_body(request), ctx.data.schema.layout, ctx.data.vocab
    )
    return await _after_change(request, before, seg)


async def _after_change(request: web.Request, before: Segment, seg: Segment) -> web.Response:
    """Forget the cached program; recompute stored membership when evaluation changed."""
    services = request.app[SERVICES]
    site = request.match_info["site"]
    services.runtime.forget(site)
    out = seg.to_json()
    if seg.evaluated != before.evaluated or (seg.evaluated and seg.rule != before.rule):
        out["recompute_job"] = await start_recompute(services, site, now(request), "edit")
    return json_response(out)


@routes.delete(BASE + "/{segment}")
async def delete(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    site = request.match_info["site"]
    await services.segments.delete(site, request.match_info["segment"])
    services.runtime.forget(site)
    return web.Response(status=204)


@routes.get(BASE + "/{segment}/versions")
async def versions(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    found = await services.segments.versions(
        request.match_info["site"], request.match_info["segment"]
    )
    return json_response({"versions": found})


@routes.post(BASE + "/{segment}/rollback")
async def rollback(request: web.Request) -> web.Response:
    """`{"to": <old version>, "version": <current version>}`: the old definition becomes
    the newest version (history is kept, never rewritten)."""
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    sid = request.match_info["segment"]
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("to"), int):
        raise ValidationError("to: the version to roll back to (an integer)")
    old = next(
        (v for v in await services.segments.versions(ctx.site.id, sid)
         if v["version"] == body["to"]), None,
    )  # fmt: skip
    if old is None:
        raise NotFoundError(f"to: segment {sid!r} has no version {body['to']}")
    change = {k: old[k] for k in ("name", "description", "tags", "type", "status",
                                  "priority", "rule", "salt")}  # fmt: skip
    before = await services.segments.get(ctx.site.id, sid)
    seg = await services.segments.update(
        ctx.site.id, sid, {**change, "version": body.get("version")},
        ctx.data.schema.layout, ctx.data.vocab,
    )  # fmt: skip
    return await _after_change(request, before, seg)
