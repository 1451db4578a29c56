"""Admin API: campaign results (exposures, feedback, conversions, lift over the holdout)."""

from __future__ import annotations

from aiohttp import web

from segserver.http.keys import SERVICES
from segserver.http.request import json_response
from segserver.results import Results
from segserver.storage.results import ResultStore
from segserver.wiring import Services

routes = web.RouteTableDef()


def results_of(services: Services) -> Results:
    """A reader of results: the summary needs no per-process state."""
    store = ResultStore(services.clients.raw, services.scripts, services.keys)
    return Results(store, services.runtime)


@routes.get("/v1/admin/sites/{site}/campaigns/{id}/results")
async def campaign_results(request: web.Request) -> web.Response:
    """Per arm: exposed visitors, impressions, clicks, dismisses, conversion events,
    goal conversions and rates; per variant the lift over the holdout (z-test)."""
    summary = await results_of(request.app[SERVICES]).summary(
        request.match_info["site"], request.match_info["id"]
    )
    return json_response(summary)
