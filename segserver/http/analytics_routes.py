"""Admin API: segment analytics (stats and size history, member export, live preview,
set expressions, overlap) and static segments (member upload, freeze).

Static members are uploaded with `POST .../segments/{id}/members` to a segment
created with `"type": "static"`: a JSON body `{"visitor_ids": [...], "mode":
"replace" | "add"}` (or a bare list), or a CSV body (`Content-Type: text/csv`, visitor
ids in the first column, an optional `visitor_id` header, `?mode=`).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from segserver.api import analytics as m
from segserver.api import validate
from segserver.catalogue.analytics import SegmentAnalytics, compile_expression, usable
from segserver.catalogue.runtime import SiteContext
from segserver.errors import ConflictError, ValidationError
from segserver.http.keys import CLOCK, SERVICES
from segserver.http.middlewares import require
from segserver.http.ops import LOOPS
from segserver.http.request import body_of, json_body, json_response, now
from segserver.jobs.history import DAY
from segserver.profile.identity import check_visitor_id
from segserver.trust.auth import Role
from segserver.wiring import Services

log = logging.getLogger("segserver.http")
routes = web.RouteTableDef()
BASE = "/v1/admin/sites/{site}/segments"
DEFAULT_SAMPLE = 5_000  # see segserver/catalogue/analytics.py


async def _context(request: web.Request) -> tuple[Services, SiteContext, SegmentAnalytics]:
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    return services, ctx, services.analytics


def _whole(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(f"{name}: must be a whole number from {lo} to {hi}")
    return value


@routes.get(BASE + "/{segment}/stats")
async def stats(request: web.Request) -> web.Response:
    """Size now (sum of BITCOUNT over shards) and the size history since `?since=`
    (epoch seconds; default 90 days ago): `{"t": epoch seconds, "size": n}` points."""
    _, ctx, analytics = await _context(request)
    seg = usable(ctx, request.match_info["segment"], "segment")
    try:
        since = float(request.query.get("since", now(request) - 90 * DAY))
    except ValueError:
        raise ValidationError("since: must be epoch seconds") from None
    points = await analytics.store.history(ctx.site.id, seg.slot, since)
    return json_response({
        "id": seg.id, "type": seg.type, "size": await analytics.size(ctx.site.id, seg),
        "history": [{"t": t, "size": n} for t, n in points],
    })  # fmt: skip


@routes.get(BASE + "/{segment}/members.csv")
async def export(request: web.Request) -> web.StreamResponse:
    """Members as CSV, streamed: `visitor_id` plus `?attrs=a,b` decoded by name."""
    _, ctx, analytics = await _context(request)
    seg = usable(ctx, request.match_info["segment"], "segment")
    attrs = [a for a in request.query.get("attrs", "").split(",") if a]
    rows = analytics.export_csv(ctx, seg, attrs)
    first = await anext(rows)  # validates `attrs` before anything is sent
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{seg.id}.csv"',
    })  # fmt: skip
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(first)
    async for chunk in rows:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


@routes.post(BASE + "/preview")
async def preview(request: web.Request) -> web.Response:
    """`{"rule": {...}, "sample_size"?: n, "seed"?: n}` → count and 20 sample ids;
    exact up to `sample_size` visitors, else an estimate with a 95 % interval."""
    _, ctx, analytics = await _context(request)
    body = await body_of(request, m.PreviewIn)
    if not isinstance(body, dict) or "rule" not in body:
        raise ValidationError("rule: required (the draft rule)")
    unknown = set(body) - {"rule", "sample_size", "seed"}
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
    size = _whole(body, "sample_size", DEFAULT_SAMPLE, 100, 1_000_000)
    seed = _whole(body, "seed", None, 0, 2**63 - 1)
    started = time.perf_counter()
    out = await analytics.preview(ctx, body["rule"], now(request), size or DEFAULT_SAMPLE, seed)
    return json_response({**out, "took_ms": round(1000 * (time.perf_counter() - started), 1)})


@routes.post(BASE + "/query")
async def query(request: web.Request) -> web.Response:
    """`{"expression": <expr>, "save_as"?: {"id", "name"}}` → count and sample; with
    save_as the result becomes a new static segment."""
    body = await body_of(request, m.QueryIn)
    if isinstance(body, dict) and "save_as" in body:
        require(request, Role.EDITOR)  # saving writes a segment; counting only reads
    services, ctx, analytics = await _context(request)
    if not isinstance(body, dict) or "expression" not in body:
        raise ValidationError("expression: required")
    unknown = set(body) - {"expression", "save_as"}
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
    started = time.perf_counter()
    compile_expression(ctx, body["expression"])  # every 4xx before anything is written
    saved = None
    if "save_as" in body:
        saved = await services.edits.create_static(ctx, body["save_as"], "save_as",
                                                   "Saved from a segment query")  # fmt: skip
    count, sample, result_keys = await analytics.query(ctx, body["expression"])
    out: dict[str, Any] = {"count": count, "sample": sample}
    if saved is not None:
        ids = await analytics.members_of(ctx.site.id, await analytics.store.bitmaps(result_keys))
        await analytics.write_static(ctx.site.id, saved, ids, replace=True)
        out["saved"] = saved.to_json()
    return json_response({**out, "took_ms": round(1000 * (time.perf_counter() - started), 1)})


@routes.post(BASE + "/overlap")
async def overlap(request: web.Request) -> web.Response:
    """`{"ids": [up to 50 segment ids]}` → `matrix[i][j]`: visitors in both."""
    _, ctx, analytics = await _context(request)
    body = await body_of(request, m.OverlapIn)
    if not isinstance(body, dict):
        raise ValidationError("ids: required (a list of segment ids)")
    started = time.perf_counter()
    matrix = await analytics.overlap(ctx, body.get("ids"))
    return json_response({"ids": body["ids"], "matrix": matrix,
                          "took_ms": round(1000 * (time.perf_counter() - started), 1)})  # fmt: skip


def _uploaded_ids(raw: bytes, content_type: str, body: Any) -> tuple[list[str], Any]:
    if content_type == "text/csv":
        rows = [r for r in csv.reader(io.StringIO(raw.decode("utf-8", "replace"))) if r]
        if rows and rows[0][0].strip() == "visitor_id":
            rows = rows[1:]
        return [r[0].strip() for r in rows], None
    if isinstance(body, list):
        return body, None
    if not isinstance(body, dict) or not isinstance(body.get("visitor_ids"), list):
        raise ValidationError("visitor_ids: required (a list of visitor ids)")
    if set(body) - {"visitor_ids", "mode"}:
        raise ValidationError(f"{sorted(set(body) - {'visitor_ids', 'mode'})[0]}: unknown field")
    return body["visitor_ids"], body.get("mode")


@routes.post(BASE + "/{segment}/members")
async def upload(request: web.Request) -> web.Response:
    """Set (`mode` replace, the default) or extend (`add`) a static segment's members."""
    _, ctx, analytics = await _context(request)
    seg = usable(ctx, request.match_info["segment"], "segment")
    if seg.type != "static":
        raise ConflictError(f"segment: {seg.id!r} is dynamic; upload members to a static "
                            "segment", code="not_static")  # fmt: skip
    raw = await request.read()
    body = None if request.content_type == "text/csv" else await json_body(request)
    if body is not None and not isinstance(body, list):
        validate(m.MembersIn, body)
    ids, mode = _uploaded_ids(raw, request.content_type, body)
    mode = mode if mode is not None else request.query.get("mode", "replace")
    if mode not in ("replace", "add"):
        raise ValidationError("mode: must be replace or add")
    for i, vid in enumerate(ids):
        check_visitor_id(vid, f"visitor_ids[{i}]")
    added, unknown = await analytics.write_static(ctx.site.id, seg, ids,
                                                  replace=mode == "replace")  # fmt: skip
    return json_response({"id": seg.id, "added": added, "unknown_count": len(unknown),
                          "unknown": unknown[:100],
                          "size": await analytics.size(ctx.site.id, seg)})  # fmt: skip


@routes.post(BASE + "/{segment}/freeze")
async def freeze(request: web.Request) -> web.Response:
    """`{"id": new id, "name"?: ...}` → a new static segment holding the members of
    `{segment}` now (its stored bitmaps as read at this moment)."""
    services, ctx, analytics = await _context(request)
    source = usable(ctx, request.match_info["segment"], "segment")
    spec = await body_of(request, m.StaticSpec)
    at = now(request)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    seg = await services.edits.create_static(ctx, spec, "body",
                                             f"Frozen from {source.id} at {when}")  # fmt: skip
    bitmaps = await analytics.store.segment_bitmaps(ctx.site.id, source.slot)
    ids = await analytics.members_of(ctx.site.id, bitmaps)
    await analytics.write_static(ctx.site.id, seg, ids, replace=True)
    return json_response({**seg.to_json(), "frozen_from": source.id, "frozen_at": at,
                          "size": await analytics.size(ctx.site.id, seg)}, status=201)  # fmt: skip


async def history_ctx(app: web.Application) -> AsyncIterator[None]:
    """Size-history snapshots in the background of every server process."""
    snapshots = app[SERVICES].history
    if snapshots is None:  # history_interval_seconds = 0
        yield
        return
    clock, loops = app[CLOCK], app[LOOPS]
    loops.start("history", lambda: snapshots.run_round(clock),
                pause=lambda: snapshots.pause(clock), period=snapshots.interval)  # fmt: skip
    yield
    await loops.stop("history")
