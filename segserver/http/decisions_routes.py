"""Admin API: placements, content and campaigns (versioned), and the site policy.
Each handler parses, calls one flow and serialises."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from segserver.api import catalogue as m
from segserver.api import sites as ms
from segserver.http.keys import SERVICES
from segserver.http.request import body_of, json_response
from segserver.storage.models import ITEM_KINDS

routes = web.RouteTableDef()
PLURALS = {"placement": "placements", "content": "content", "campaign": "campaigns"}
MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "placement": (m.PlacementIn, m.PlacementPatch),
    "content": (m.ContentIn, m.ContentPatch),
    "campaign": (m.CampaignIn, m.CampaignPatch),
}


def _item_routes(kind: str, plural: str) -> None:
    base = f"/v1/admin/sites/{{site}}/{plural}"
    new, patch = MODELS[kind]

    async def list_(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        site = (await services.runtime.get(request.match_info["site"])).site.id
        return json_response({plural: await services.items[kind].all(site)})

    async def create(request: web.Request) -> web.Response:
        edits = request.app[SERVICES].edits
        item = await edits.create_item(kind, request.match_info["site"],
                                       await body_of(request, new))  # fmt: skip
        return json_response(item, status=201)

    async def get(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        item = await services.items[kind].get(request.match_info["site"], request.match_info["id"])
        return json_response(item)

    async def update(request: web.Request) -> web.Response:
        edits = request.app[SERVICES].edits
        item = await edits.update_item(kind, request.match_info["site"], request.match_info["id"],
                                       await body_of(request, patch))  # fmt: skip
        return json_response(item)

    async def delete(request: web.Request) -> web.Response:
        edits = request.app[SERVICES].edits
        await edits.delete_item(kind, request.match_info["site"], request.match_info["id"])
        return web.Response(status=204)

    async def versions(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        found = await services.items[kind].versions(request.match_info["site"],
                                                    request.match_info["id"])  # fmt: skip
        return json_response({"versions": found})

    routes.get(base)(list_)
    routes.post(base)(create)
    routes.get(base + "/{id}")(get)
    routes.put(base + "/{id}")(update)
    routes.patch(base + "/{id}")(update)
    routes.delete(base + "/{id}")(delete)
    routes.get(base + "/{id}/versions")(versions)


for _kind in ITEM_KINDS:
    _item_routes(_kind, PLURALS[_kind])


@routes.put("/v1/admin/sites/{site}/policy")
async def put_policy(request: web.Request) -> web.Response:
    """The site-wide policy: `{interruptive_per_session, interruptive_per_day, holdout}`."""
    edits = request.app[SERVICES].edits
    return json_response(await edits.put_policy(request.match_info["site"],
                                                await body_of(request, ms.PolicyIn)))  # fmt: skip
