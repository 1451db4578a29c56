"""Admin API: segments of a site (catalogue, versions). Each handler parses, calls one
flow and serialises."""

from __future__ import annotations

from aiohttp import web

from segserver.api import catalogue as m
from segserver.catalogue.segments import STATUSES, TYPES, list_segments
from segserver.dsl.text import from_text
from segserver.errors import RuleError, ValidationError
from segserver.http.keys import SERVICES
from segserver.http.request import body_of, json_response, now, query_number

routes = web.RouteTableDef()
BASE = "/v1/admin/sites/{site}/segments"
# {segment} never matches the words of the segment-wide operations (POST .../preview)
ONE = BASE + "/{segment:(?!(?:preview|query|overlap)$)[^{}/]+}"


def _text_form(body: dict[str, object]) -> dict[str, object]:
    """A body with `rule_text` (the rule's text form, docs/rules.md) instead of `rule`:
    parsed here into `rule`; errors name the character (`rule_text[12]: ...`), 422."""
    if body.get("rule_text") is None:  # absent, or null like every optional field
        return {k: v for k, v in body.items() if k != "rule_text"}
    if body.get("rule") is not None:
        raise ValidationError("rule_text: give rule (JSON) or rule_text, not both")
    body = dict(body)
    text = body.pop("rule_text")
    if not isinstance(text, str):  # the model checked it; never an assert on input
        raise ValidationError("rule_text: must be a string")
    try:
        body["rule"] = from_text(text)
    except RuleError as exc:
        raise RuleError(f"rule_{exc.message}" if exc.message.startswith("text") else
                        f"rule_text: {exc.message}") from None  # fmt: skip
    return body


@routes.get(BASE)
async def list_(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    ctx = await services.runtime.get(request.match_info["site"])
    q = request.query
    for name, allowed in (("status", STATUSES), ("type", TYPES)):
        if name in q and q[name] not in allowed:
            raise ValidationError(f"{name}: must be one of {', '.join(allowed)}")
    page = int(query_number(request, "page", 1, 1, 100_000, whole=True))
    per_page = int(query_number(request, "per_page", 50, 1, 500, whole=True))
    found, total = list_segments(
        await services.segments.all(ctx.site.id), q=q.get("q"), status=q.get("status"),
        type_=q.get("type"), tag=q.get("tag"), sort=q.get("sort", "id"), page=page,
        per_page=per_page,
    )  # fmt: skip
    return json_response({"segments": [s.to_json() for s in found], "total": total,
                          "page": page, "per_page": per_page})  # fmt: skip


@routes.post(BASE)
async def create(request: web.Request) -> web.Response:
    edits = request.app[SERVICES].edits
    body = _text_form(await body_of(request, m.SegmentCreate))
    out = await edits.create_segment(request.match_info["site"], body, now(request))
    return json_response(out, status=201)


@routes.get(ONE)
async def get(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    seg = await services.segments.get(request.match_info["site"], request.match_info["segment"])
    return json_response(seg.to_json())


@routes.put(ONE)
@routes.patch(ONE)
async def update(request: web.Request) -> web.Response:
    """Change a segment. The body carries `version`, the version the editor saw."""
    edits = request.app[SERVICES].edits
    out = await edits.update_segment(request.match_info["site"], request.match_info["segment"],
                                     _text_form(await body_of(request, m.SegmentUpdate)),
                                     now(request))  # fmt: skip
    return json_response(out)


@routes.delete(ONE)
async def delete(request: web.Request) -> web.Response:
    edits = request.app[SERVICES].edits
    await edits.delete_segment(request.match_info["site"], request.match_info["segment"])
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
    edits = request.app[SERVICES].edits
    out = await edits.rollback_segment(request.match_info["site"], request.match_info["segment"],
                                       await body_of(request, m.Rollback),
                                       now(request))  # fmt: skip
    return json_response(out)
