"""Triggers in the app: the admin API of subscriptions and dead letters, and the
background delivery runner (`triggers_ctx`, after the services' context; the runner
and its HTTP client are built with the services)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from segserver.api import analytics as m
from segserver.api import validate
from segserver.errors import ValidationError
from segserver.http.keys import SERVICES
from segserver.http.ops import LOOPS
from segserver.http.request import body_of, json_response, now, parse_json, query_number

#: Set to False before start-up to keep the runner from looping in the background
#: (tests then step it with `app[SERVICES].trigger_runner.run_once(now)`).
TRIGGERS_BACKGROUND = web.AppKey("triggers_background", bool)


async def triggers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run webhook delivery in the background until shutdown."""
    services = app[SERVICES]
    runner = services.trigger_runner
    # trigger_poll_seconds = 0 keeps delivery out of this process (other ones do it)
    background = app.get(TRIGGERS_BACKGROUND, True) and services.settings.trigger_poll_seconds > 0
    if background:
        loops = app[LOOPS]
        runner.progress = lambda: loops.beat("triggers")
        loops.start("triggers", runner.run_round, pause=services.settings.trigger_poll_seconds)
    try:
        yield
    finally:
        if background:
            await app[LOOPS].stop("triggers")


routes = web.RouteTableDef()
_BASE = "/v1/admin/sites/{site}/triggers"


async def _site(request: web.Request) -> str:
    """The path's site, which must exist (404 otherwise)."""
    site = await request.app[SERVICES].sites.get(request.match_info["site"])
    return site.id


async def _networks(request: web.Request) -> list[str]:
    """The internal networks the site allow-lists for webhooks."""
    site = await request.app[SERVICES].sites.get(request.match_info["site"])
    return [str(n) for n in site.options.get("webhook_networks") or []]


@routes.post(_BASE)
async def create_trigger(request: web.Request) -> web.Response:
    """→ 201 with the subscription and its `secret` (shown this once)."""
    site = await _site(request)
    body = await body_of(request, m.TriggerIn)
    sub = await request.app[SERVICES].triggers.create(site, body, now(request),
                                                      await _networks(request))  # fmt: skip
    return json_response(sub.to_json(with_secret=True), status=201)


@routes.get(_BASE)
async def list_triggers(request: web.Request) -> web.Response:
    site = await _site(request)
    return json_response(await request.app[SERVICES].triggers.listing(site))


# before `{id}`, which would otherwise match "dead-letters"
@routes.get(_BASE + "/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    """`?subscription=&limit=` (default 100) → the newest dead letters and `total`."""
    site = await _site(request)
    limit = int(query_number(request, "limit", 100, 1, 10_000, whole=True))
    total, items = await request.app[SERVICES].dead_letters.read(
        site, request.query.get("subscription"), limit
    )
    return json_response({"dead_letters": items, "total": total})


@routes.post(_BASE + "/dead-letters/redrive")
async def redrive_dead_letters(request: web.Request) -> web.Response:
    """`{ids?: [delivery id], subscription?: id}` (empty body or `{}`: all) → how
    many were scheduled for delivery now, with a fresh set of retries."""
    site = await _site(request)
    raw = await request.read()
    body: Any = parse_json(raw) if raw else {}
    validate(m.RedriveIn, body)
    if not isinstance(body, dict):
        raise ValidationError("body: must be an object")
    unknown = set(body) - {"ids", "subscription"}
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
    ids = body.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise ValidationError("ids: must be a list of dead-letter ids")
    subscription = body.get("subscription")
    if subscription is not None and not isinstance(subscription, str):
        raise ValidationError("subscription: must be a trigger id")
    count = await request.app[SERVICES].dead_letters.redrive(site, now(request), ids, subscription)
    return json_response({"redriven": count})


@routes.get(_BASE + "/{id:tr_[0-9a-f]{16}}")
async def get_trigger(request: web.Request) -> web.Response:
    site = await _site(request)
    sub = await request.app[SERVICES].triggers.get(site, request.match_info["id"])
    return json_response(sub.to_json())


@routes.patch(_BASE + "/{id:tr_[0-9a-f]{16}}")
async def update_trigger(request: web.Request) -> web.Response:
    """`{url?, segments?, changes?, active?, version?}`; a stale `version` is 409."""
    site = await _site(request)
    body = await body_of(request, m.TriggerPatch)
    sub = await request.app[SERVICES].triggers.update(
        site, request.match_info["id"], body, now(request), await _networks(request)
    )
    return json_response(sub.to_json())


@routes.delete(_BASE + "/{id:tr_[0-9a-f]{16}}")
async def delete_trigger(request: web.Request) -> web.Response:
    site = await _site(request)
    await request.app[SERVICES].triggers.delete(site, request.match_info["id"])
    return web.Response(status=204)
