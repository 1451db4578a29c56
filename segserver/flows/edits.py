"""Catalogue edits: sites, segments, placements, content, campaigns and the site policy.

Every edit goes through here, so the three things that must follow one are written
once: the process' cached catalogue of the site is dropped (`Runtime.forget`; other
processes see the change within `catalogue_cache_seconds` through the site's catalogue
version, which every record write bumps), the policy bumps that version itself, and a
change of what is evaluated starts a recompute of stored membership.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segserver.catalogue.campaigns import ItemService, check_policy
from segserver.catalogue.runtime import Runtime, SiteContext
from segserver.catalogue.segments import Segment, SegmentService
from segserver.catalogue.sites import Site, SiteService
from segserver.catalogue.triggers import TriggerService
from segserver.errors import ConflictError, NotFoundError, ValidationError
from segserver.jobs.recompute import Recomputer
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.profiles import ProfileStore


def references(kind: str, item: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field path, kind, id) of every catalogue item a checked placement, content or
    campaign refers to."""
    out: list[tuple[str, str, str]] = []
    if kind == "placement" and item.get("default_content"):
        out.append(("default_content", "content", item["default_content"]))
    elif kind == "content" and item.get("payload", {}).get("segment"):
        out.append(("payload.segment", "segment", item["payload"]["segment"]))
    elif kind == "campaign":
        out.append(("placement", "placement", item["placement"]))
        for side in ("include", "exclude"):
            out += [(f"audience.{side}[{i}]", "segment", s)
                    for i, s in enumerate(item["audience"][side])]  # fmt: skip
        out += [(f"variants[{i}].content", "content", v["content"])
                for i, v in enumerate(item["variants"])]  # fmt: skip
    return out


SEGMENT_FIELDS = ("name", "description", "tags", "type", "status", "priority", "rule", "salt")


def needs_recompute(before: Segment | None, after: Segment) -> bool:
    """Does stored membership have to be recomputed after this edit? When the segment
    starts or stops being evaluated, or its rule changes while it is evaluated."""
    if before is None:
        return after.evaluated
    return after.evaluated != before.evaluated or (after.evaluated and after.rule != before.rule)


@dataclass
class Edits:
    runtime: Runtime
    sites: SiteService
    segments: SegmentService
    items: dict[str, ItemService]  # placement, content, campaign
    catalogue: CatalogueStore
    recomputer: Recomputer
    profiles: ProfileStore
    triggers: TriggerService

    # --- sites ---------------------------------------------------------------------------

    async def create_site(self, body: Any) -> dict[str, Any]:
        """A new site; the prebuilt segments are installed unless `"prebuilt": false`."""
        site = await self.sites.create(body)
        out = site.to_json()
        if not (isinstance(body, dict) and body.get("prebuilt") is False):
            ctx = await self.runtime.get(site.id)
            layout, vocab = ctx.data.schema.layout, ctx.data.vocab
            out["segments"] = await self.segments.install_prebuilt(site.id, layout, vocab)
            self.runtime.forget(site.id)
        return out

    async def update_site(self, site_id: str, body: Any) -> Site:
        site = await self.sites.update(site_id, body)
        self.runtime.forget(site.id)
        return site

    async def rotate_key(self, site_id: str) -> Site:
        site = await self.sites.rotate_key(site_id)
        self.runtime.forget(site.id)
        return site

    async def rotate_server_key(self, site_id: str) -> Site:
        site = await self.sites.rotate_server_key(site_id)
        self.runtime.forget(site.id)
        return site

    async def put_policy(self, site_id: str, body: Any) -> dict[str, Any]:
        """The site-wide decision policy (site option "policy")."""
        site = await self.sites.get(site_id)
        policy = check_policy(body)
        changed = await self.sites.update(site.id, {"options": {**site.options, "policy": policy}})
        await self.catalogue.bump(site.id)
        self.runtime.forget(site.id)
        policy_json: dict[str, Any] = changed.options["policy"]
        return policy_json

    # --- segments ------------------------------------------------------------------------

    async def create_segment(self, site_id: str, body: Any, at: float) -> dict[str, Any]:
        ctx = await self.runtime.get(site_id)
        seg = await self.segments.create(ctx.site.id, body, ctx.data.schema.layout,
                                         ctx.data.vocab)  # fmt: skip
        return await self._after_segment(ctx.site.id, None, seg, at)

    async def update_segment(self, site_id: str, sid: str, body: Any, at: float
                             ) -> dict[str, Any]:  # fmt: skip
        """Change a segment; the body carries `version`, the version the editor saw."""
        ctx = await self.runtime.get(site_id)
        before = await self.segments.get(ctx.site.id, sid)
        seg = await self.segments.update(ctx.site.id, sid, body, ctx.data.schema.layout,
                                         ctx.data.vocab)  # fmt: skip
        return await self._after_segment(ctx.site.id, before, seg, at)

    async def rollback_segment(self, site_id: str, sid: str, body: Any, at: float
                               ) -> dict[str, Any]:  # fmt: skip
        """`{"to": <old version>, "version": <current version>}`: the old definition
        becomes the newest version (history is kept, never rewritten)."""
        if not isinstance(body, dict) or isinstance(body.get("to"), bool) or not isinstance(
                body.get("to"), int):  # fmt: skip
            raise ValidationError("to: the version to roll back to (an integer)")
        ctx = await self.runtime.get(site_id)
        versions = await self.segments.versions(ctx.site.id, sid)
        old = next((v for v in versions if v["version"] == body["to"]), None)
        if old is None:
            raise NotFoundError(f"to: segment {sid!r} has no version {body['to']}")
        change = {k: old[k] for k in SEGMENT_FIELDS}
        return await self.update_segment(ctx.site.id, sid, {**change,
                                         "version": body.get("version")}, at)  # fmt: skip

    async def delete_segment(self, site_id: str, sid: str) -> None:
        await self.segments.get(site_id, sid)  # 404 first
        await self._refused_if_used(site_id, "segment", sid)
        await self.segments.delete(site_id, sid)
        self.runtime.forget(site_id)

    async def create_static(self, ctx: SiteContext, spec: Any, path: str,
                            description: str) -> Segment:  # fmt: skip
        """An (empty) active static segment from `{id, name?, description?, tags?}` found
        at `path` of a request (analytics: save a query, freeze a segment)."""
        if not isinstance(spec, dict) or set(spec) - {"id", "name", "description", "tags"}:
            raise ValidationError(f"{path}: must be an object with id and optional name, "
                                  "description, tags")  # fmt: skip
        body = {"description": description, **spec, "type": "static", "status": "active"}
        try:
            seg = await self.segments.create(ctx.site.id, body, ctx.data.schema.layout,
                                             ctx.data.vocab)  # fmt: skip
        except (ValidationError, ConflictError) as exc:
            raise type(exc)(f"{path}.{exc.message}", code=exc.code) from None
        self.runtime.forget(ctx.site.id)
        return seg

    async def _after_segment(self, site: str, before: Segment | None, seg: Segment,
                             at: float) -> dict[str, Any]:  # fmt: skip
        self.runtime.forget(site)
        out = seg.to_json()
        if needs_recompute(before, seg):
            out["recompute_job"] = await self.recompute(site, at, "edit", [seg.id])
        return out

    async def recompute(self, site: str, at: float, cause: str,
                        segments: list[str] | None = None) -> str:  # fmt: skip
        """Start recomputing the site's stored membership in the background (of the
        segments `segments` and those that refer to them; default all); the job id."""
        total = await self.profiles.count(site)
        return await self.recomputer.start(site, at, cause, total, segments)

    # --- placements, content, campaigns --------------------------------------------------

    async def create_item(self, kind: str, site_id: str, body: Any) -> dict[str, Any]:
        site = (await self.runtime.get(site_id)).site.id
        await self._check_references(site, kind, self.items[kind].check(body))
        item = await self.items[kind].create(site, body)
        self.runtime.forget(site)
        return item

    async def update_item(self, kind: str, site_id: str, item_id: str, body: Any
                          ) -> dict[str, Any]:  # fmt: skip
        site = (await self.runtime.get(site_id)).site.id
        old = await self.items[kind].get(site, item_id)
        merged = {k: v for k, v in old.items() if k not in ("version", "created_at",
                                                            "updated_at")}  # fmt: skip
        if isinstance(body, dict):
            merged.update({k: v for k, v in body.items() if k != "version"})
            await self._check_references(site, kind, self.items[kind].check(merged))
        item = await self.items[kind].update(site, item_id, body)
        self.runtime.forget(site)
        return item

    async def delete_item(self, kind: str, site_id: str, item_id: str) -> None:
        site = (await self.runtime.get(site_id)).site.id
        await self.items[kind].get(site, item_id)  # 404 first
        await self._refused_if_used(site, kind, item_id)
        await self.items[kind].delete(site, item_id)
        self.runtime.forget(site)

    # --- referential integrity -----------------------------------------------------------

    async def _exists(self, site: str, kind: str, item_id: str) -> bool:
        try:
            if kind == "segment":
                await self.segments.get(site, item_id)
            else:
                await self.items[kind].get(site, item_id)
        except NotFoundError:
            return False
        return True

    async def _check_references(self, site: str, kind: str, data: dict[str, Any]) -> None:
        """Every catalogue item a placement, content or campaign names must exist
        (a campaign pointing nowhere would silently stop serving): 400 naming the field."""
        for path, ref_kind, ref in references(kind, data):
            if not await self._exists(site, ref_kind, ref):
                raise ValidationError(f"{path}: {ref_kind} {ref!r} does not exist",
                                      code="unknown_reference")  # fmt: skip

    async def _refused_if_used(self, site: str, kind: str, item_id: str) -> None:
        """409 naming every item that refers to `item_id` (segments that refer to a
        segment are checked by SegmentService.delete)."""
        users = []
        for user_kind in ("placement", "content", "campaign"):
            for item in await self.items[user_kind].all(site):
                if any(rk == kind and ref == item_id
                       for _, rk, ref in references(user_kind, item)):  # fmt: skip
                    users.append(f"{user_kind} {item['id']!r}")
        if kind == "segment":
            users += [f"trigger {t.id!r}" for t in await self.triggers.list_all(site)
                      if item_id in t.segments]  # fmt: skip
        if users:
            raise ConflictError(f"{kind} {item_id!r} is used by {', '.join(users)}",
                                code="in_use", details={"used_by": users})  # fmt: skip
