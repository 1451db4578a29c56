"""Admin API: background jobs of a site (bulk recompute), with state and progress."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from segserver.api.analytics import JobIn
from segserver.errors import ValidationError
from segserver.http.keys import SERVICES
from segserver.http.request import body_of, json_response, now

routes = web.RouteTableDef()
BASE = "/v1/admin/sites/{site}/jobs"


def job_json(raw: dict[str, str]) -> dict[str, Any]:
    total, done = int(raw.get("total", 0) or 0), int(raw.get("done", 0) or 0)
    percent = 100.0 if raw.get("state") == "done" else (100.0 * done / total if total else 0.0)
    retry_at = raw.get("retry_at") or None
    return {**raw, "done": done, "total": total, "percent": round(min(percent, 100.0), 1),
            "attempts": int(raw.get("attempts") or 0),
            "retry_at": float(retry_at) if retry_at else None}  # fmt: skip


@routes.post(BASE)
async def create(request: web.Request) -> web.Response:
    """`{"kind": "recompute"}` → 202 with the job."""
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    body = await body_of(request, JobIn)
    if not isinstance(body, dict) or body.get("kind") != "recompute":
        raise ValidationError('kind: must be "recompute"')
    job = await services.edits.recompute(ctx.site.id, now(request), "recompute")
    return json_response(job_json(await services.jobs.get(ctx.site.id, job)), status=202)


@routes.get(BASE)
async def list_(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    site = (await services.runtime.get(request.match_info["site"])).site.id
    jobs = [job_json(await services.jobs.get(site, j)) for j in await services.jobs.recent(site)]
    return json_response({"jobs": jobs})


@routes.get(BASE + "/{job}")
async def get(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    site = (await services.runtime.get(request.match_info["site"])).site.id
    return json_response(job_json(await services.jobs.get(site, request.match_info["job"])))
