"""Admin API: campaign results (exposures, feedback, conversions, lift over the holdout)."""

from __future__ import annotations

from aiohttp import web

from segserver.http.keys import SERVICES
from segserver.http.request import json_response

routes = web.RouteTableDef()


@routes.get("/v1/admin/sites/{site}/campaigns/{id}/results")
async def campaign_results(request: web.Request) -> web.Response:
    """Per arm: exposed visitors, impressions, clicks, dismisses, conversion events,
    goal conversions and rates; per variant the lift over the holdout (z-test)."""
    summary = await request.app[SERVICES].results.summary(
        request.match_info["site"], request.match_info["id"]
    )
    return json_response(summary)
