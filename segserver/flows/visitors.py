"""A visitor as the admin API shows it: read (profile decoded by attribute name),
export (everything stored about it) and erase (right to be forgotten: every trace,
with an exit per segment it was in for trigger subscribers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segserver.bitsets import bitmap_slots
from segserver.catalogue.runtime import Runtime, SiteContext
from segserver.errors import NotFoundError
from segserver.profile import codec
from segserver.profile.identity import check_visitor_id
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.changes import ChangeStore
from segserver.storage.erasure import ErasureStore
from segserver.storage.profiles import ProfileStore


async def segment_slots(catalogue: CatalogueStore, ctx: SiteContext) -> list[tuple[int, str]]:
    """Every segment slot ever given on the site with its segment id ("" once deleted):
    erasure clears a visitor's bit in all of them."""
    ids = {s.slot: s.id for s in ctx.segments.values()}
    given = await catalogue.slot_count(ctx.site.id, "segment")
    return [(slot, ids.get(slot, "")) for slot in range(given)]


def _history(entry: str) -> dict[str, Any]:
    """One stored history entry `time|change|segment|cause` as an object."""
    t, change, segment, cause = [*entry.split("|"), "", "", "", ""][:4]
    return {"time": float(t) if t.replace(".", "", 1).isdigit() else t, "change": change,
            "segment": segment, "cause": cause}  # fmt: skip


@dataclass
class Visitors:
    runtime: Runtime
    profiles: ProfileStore
    erasure: ErasureStore
    changes: ChangeStore
    catalogue: CatalogueStore

    async def read(self, site_id: str, visitor_id: Any) -> dict[str, Any]:
        ctx = await self.runtime.get(site_id)
        vid = check_visitor_id(visitor_id, "visitor id")
        blob = await self.profiles.get(ctx.site.id, vid)
        if blob is None:
            raise NotFoundError(f"visitor {vid!r} has no profile on site {ctx.site.id!r}")
        return {"visitor_id": vid, "site": ctx.site.id, **await self._decoded(ctx, blob)}

    async def _decoded(self, ctx: SiteContext, blob: bytes) -> dict[str, Any]:
        layout = ctx.data.schema.layout
        if codec.unknown_codes(blob, layout, ctx.data.vocab):
            await self.runtime.refresh_dictionaries(ctx)
        return codec.to_json(blob, layout, ctx.data.vocab)

    async def export(self, site_id: str, visitor_id: Any) -> dict[str, Any]:
        """Everything stored about the visitor (right of access); 404 if nothing is."""
        ctx = await self.runtime.get(site_id)
        vid = check_visitor_id(visitor_id, "visitor id")
        blob = await self.profiles.get(ctx.site.id, vid)
        own = await self.erasure.own_keys(ctx.site.id, vid)
        changes = await self.erasure.stream_entries(ctx.site.id, vid)
        dead = await self.erasure.dead_letters(ctx.site.id, vid)
        if blob is None and not (own["membership"] or own["history"] or own["caps"]
                                 or own["arms"] or own["recent"] or changes or dead):  # fmt: skip
            raise NotFoundError(f"visitor {vid!r} has no data on site {ctx.site.id!r}")
        by_slot = {s.slot: s.id for s in ctx.segments.values()}
        slots = [int(s) for s in bitmap_slots(own["bits"])]
        return {
            "visitor_id": vid, "site": ctx.site.id,
            "profile": None if blob is None else await self._decoded(ctx, blob),
            "membership": {**own["membership"],
                           "segments": [by_slot.get(s, f"slot {s}") for s in slots]},
            "history": [_history(h) for h in own["history"]], "caps": own["caps"],
            "arms": own["arms"],
            "recently_viewed": own["recent"], "event_ids": own["event_ids"],
            "feedback": own["feedback"], "scheduled_at": own["due"], "changes": changes,
            "dead_letters": dead,
        }  # fmt: skip

    async def erase(self, site_id: str, visitor_id: Any, now: float) -> None:
        """Every key of the visitor, its ordinal, its bits in every segment bitmap, its
        due entries, the change-stream entries and trigger deliveries about it; trigger
        subscribers get an exit (cause "erase") per segment it was in."""
        ctx = await self.runtime.get(site_id)
        site = ctx.site.id
        vid = check_visitor_id(visitor_id, "visitor id")
        emit = bool(await self.changes.subscription_ids(site))
        segments = await segment_slots(self.catalogue, ctx)
        existed, exits = await self.erasure.erase(site, vid, segments, emit, now)
        shard = self.erasure.keys.visitor(site, vid).shard
        scrubbed = await self.erasure.scrub_stream(site, shard, {vid}, keep=set(exits))
        scrubbed += await self.erasure.scrub_triggers(site, {vid})
        if not existed and not scrubbed:
            raise NotFoundError(f"visitor {vid!r} has no profile on site {site!r}")
