"""A visitor as the admin API shows it: read (profile decoded by attribute name) and
erase (right to be forgotten)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segserver.catalogue.runtime import Runtime
from segserver.errors import NotFoundError
from segserver.profile import codec
from segserver.profile.identity import check_visitor_id
from segserver.storage.profiles import ProfileStore


@dataclass
class Visitors:
    runtime: Runtime
    profiles: ProfileStore

    async def read(self, site_id: str, visitor_id: Any) -> dict[str, Any]:
        ctx = await self.runtime.get(site_id)
        vid = check_visitor_id(visitor_id, "visitor id")
        blob = await self.profiles.get(ctx.site.id, vid)
        if blob is None:
            raise NotFoundError(f"visitor {vid!r} has no profile on site {ctx.site.id!r}")
        layout = ctx.data.schema.layout
        if codec.unknown_codes(blob, layout, ctx.data.vocab):
            await self.runtime.refresh_dictionaries(ctx)
        return {"visitor_id": vid, "site": ctx.site.id,
                **codec.to_json(blob, layout, ctx.data.vocab)}  # fmt: skip

    async def erase(self, site_id: str, visitor_id: Any) -> None:
        """Every key of the visitor and its bits in the segment bitmaps."""
        ctx = await self.runtime.get(site_id)
        vid = check_visitor_id(visitor_id, "visitor id")
        k = self.profiles.keys.visitor(ctx.site.id, vid)
        if not await self.profiles.delete(ctx.site.id, vid, [k.arms, k.recent]):
            raise NotFoundError(f"visitor {vid!r} has no profile on site {ctx.site.id!r}")
