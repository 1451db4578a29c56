"""The per-process view of each site the request path uses, cached.

A site's record, schema, event types and dictionaries are read from Redis once
and then served from memory; an entry older than `ttl` seconds is refreshed in
the background while the old one keeps serving (no request waits for it, and
changes made by another process show within `ttl`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.catalogue.campaigns import ItemService, goal_index
from segserver.catalogue.segments import Segment, SegmentService
from segserver.catalogue.sites import Site, SiteService, site_id_of_key
from segserver.decide import Campaign, Policy
from segserver.engine import Program, build_program
from segserver.errors import AuthError, NotFoundError, RuleError, SegserverError
from segserver.logs import Throttled
from segserver.profile.ingest import SiteData
from segserver.profile.schema import Kind
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.dictionary import DictionaryStore
from segserver.trust.auth import site_of_server_key

log = logging.getLogger("segserver.catalogue")
RETRY_SECONDS = 1.0  # a failed background refresh is tried again after this long
_LOAD_TRIES = 3  # reads of a catalogue edited while it is read, before giving up caching


@dataclass
class SiteContext:
    """One site as the request path sees it, with its compiled rule program."""

    site: Site
    data: SiteData
    loaded_at: float
    catalogue_version: int = 0
    segments: dict[str, Segment] = field(default_factory=dict)
    program: Program | None = None
    #: stored-membership slot of each program bit (program bit i → slots[i])
    slots: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    placements: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, dict[str, Any]] = field(default_factory=dict)
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    _decision_campaigns: dict[str, Campaign] | None = None
    _slot_list: list[int] | None = None
    _in_order: list[Campaign] | None = None

    # Derived once per loaded context, not per page view (the context is rebuilt
    # whenever the site or its catalogue changes).
    @cached_property
    def policy(self) -> Policy:
        return Policy.from_json(self.site.options.get("policy"))

    @cached_property
    def priorities(self) -> dict[str, int]:
        return {s.id: s.priority for s in self.segments.values()}

    @cached_property
    def static_slots(self) -> dict[int, str]:
        """Stored slot → id of the active static segments (read from stored bits)."""
        return {s.slot: s.id for s in self.segments.values()
                if s.type == "static" and s.status == "active"}  # fmt: skip

    @property
    def slot_list(self) -> list[int]:
        """`slots` as Python ints (program bit i → stored slot), for per-visitor loops."""
        if self._slot_list is None:
            self._slot_list = [int(s) for s in self.slots]
        return self._slot_list

    @cached_property
    def goals(self) -> dict[str, list[str]]:
        """event type → campaigns that have it as a goal."""
        return goal_index(self.campaigns)

    def decision_campaigns(self) -> dict[str, Campaign]:
        """Active campaigns whose placement exists, as decide/ takes them."""
        if self._decision_campaigns is None:
            self._decision_campaigns = {
                c["id"]: Campaign.from_json(c, self.placements[c["placement"]]["interruptive"])
                for c in self.campaigns.values()
                if c["status"] == "active" and c["placement"] in self.placements
            }  # fmt: skip
        return self._decision_campaigns

    def campaigns_in_order(self) -> list[Campaign]:
        """`decision_campaigns()` by priority (decide() then sorts an already sorted list)."""
        if self._in_order is None:
            self._in_order = sorted(self.decision_campaigns().values(), key=lambda c: c.order)
        return self._in_order

    def current_program(self) -> Program:
        """The program, recompiled first if new dictionary values may change a string
        operator's matches (milliseconds; never a JIT compile)."""
        if self.program is None or self.program.is_stale(self.data.vocab):
            self.compile()
        assert self.program is not None
        return self.program

    def compile(self) -> None:
        active = sorted((s for s in self.segments.values() if s.evaluated), key=lambda s: s.id)
        try:
            program = build_program(
                [s.definition() for s in active], self.data.schema.layout, self.data.vocab
            )
        except RuleError as exc:  # validated when saved; a later schema change may break one
            log.error("site %s: segments do not compile (%s); keeping the last program",
                      self.site.id, exc.message)  # fmt: skip
            if self.program is not None:
                return
            program = build_program([], self.data.schema.layout, self.data.vocab)
        self.program = program
        self.slots = np.array(
            [self.segments[sid].slot for sid in program.segment_ids], dtype=np.int64
        )
        self._slot_list = None


class Runtime:
    def __init__(
        self,
        sites: SiteService,
        segments: SegmentService,
        items: dict[str, ItemService],
        store: CatalogueStore,
        dictionary: DictionaryStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sites = sites
        self.segments = segments
        self.items = items  # placement, content, campaign
        self.store = store
        self.dictionary = dictionary
        self.ttl = ttl
        self.clock = clock
        self.contexts: dict[str, SiteContext] = {}
        self.refreshing: dict[str, asyncio.Task[Any]] = {}
        self._generations: dict[str, int] = {}  # per site: how often forget() dropped it
        self._log = Throttled(log)

    async def _load(self, site_id: str) -> SiteContext:
        """Read the site's catalogue and cache it, unless this process changed the site
        (`forget`) while it was being read: a load that began before an edit must not
        cache what it read then (the edit's own reads would see the old catalogue until
        the TTL). It reads again then, a few times at most."""
        for _ in range(_LOAD_TRIES):
            generation = self._generations.get(site_id, 0)
            ctx = await self._read(site_id)
            if self._generations.get(site_id, 0) == generation:
                self.contexts[site_id] = ctx
                return ctx
        return ctx  # edited during every read: serve the newest, cache nothing

    async def _read(self, site_id: str) -> SiteContext:
        site = await self.sites.get(site_id)
        old = self.contexts.get(site_id)
        if old is not None and old.site.schema == site.schema:
            data = old.data
        else:
            data = SiteData.of(site.id, site.schema, old.data.vocab if old else None)
        await self.dictionary.refresh(site.id, data.vocab, _string_attrs(site))
        version = await self.store.catalogue_version(site.id)
        ctx = SiteContext(site, data, self.clock(), version)
        if old is not None and old.catalogue_version == version and old.data is data:
            ctx.segments, ctx.program, ctx.slots = old.segments, old.program, old.slots
            ctx.placements, ctx.contents = old.placements, old.contents
            ctx.campaigns, ctx._decision_campaigns = old.campaigns, old._decision_campaigns
        else:
            ctx.segments = {s.id: s for s in await self.segments.all(site.id)}
            ctx.compile()
            for name, service in self.items.items():
                setattr(ctx, f"{name}s", {i["id"]: i for i in await service.all(site.id)})
        return ctx

    async def get(self, site_id: str) -> SiteContext:
        """The site's context; raises NotFoundError for an unknown site."""
        ctx = self.contexts.get(site_id)
        if ctx is None:
            task = self.refreshing.get(site_id)
            if task is None:
                return await self._refresh(site_id)
            shared: SiteContext | None = await asyncio.shield(task)
            return shared if shared is not None else await self._refresh(site_id)
        if self.clock() - ctx.loaded_at > self.ttl and site_id not in self.refreshing:
            self.refreshing[site_id] = asyncio.create_task(self._refresh_quietly(site_id))
        return ctx

    async def _refresh_quietly(self, site_id: str) -> SiteContext | None:
        """A background refresh: on failure the cached context keeps serving."""
        try:
            return await self._refresh(site_id)
        except SegserverError as exc:
            # Redis (or the site's cluster node) is out: try again in a second, not on
            # the next request (every page view started a refresh and logged its
            # failure: thousands a second against the dead node during an outage)
            cached = self.contexts.get(site_id)
            if cached is not None:
                cached.loaded_at = self.clock() - self.ttl + RETRY_SECONDS
            self._log.warning(f"refresh {site_id}",
                              "site %s: catalogue refresh failed (%s); serving the cached one",
                              site_id, exc.message)  # fmt: skip
            return None

    async def _refresh(self, site_id: str) -> SiteContext:
        try:
            return await self._load(site_id)
        except NotFoundError:
            self.contexts.pop(site_id, None)
            raise
        finally:
            self.refreshing.pop(site_id, None)

    async def by_key(self, site_key: str) -> SiteContext:
        """The site a public key belongs to (constant-time compare), or AuthError."""
        site_id = site_id_of_key(site_key)
        if site_id is None:
            raise AuthError("site key: malformed", code="invalid_site_key")
        try:
            ctx = await self.get(site_id)
        except NotFoundError:
            raise AuthError("site key: unknown", code="invalid_site_key") from None
        if not _same(ctx.site.site_key, site_key):
            # The cached key may be stale after a rotation: check Redis once.
            ctx = await self._refresh(site_id)
            if not _same(ctx.site.site_key, site_key):
                raise AuthError("site key: unknown", code="invalid_site_key")
        return ctx

    async def by_server_key(self, server_key: str) -> SiteContext:
        """The site a secret server key belongs to (constant-time compare), or AuthError."""
        site_id = site_of_server_key(server_key)
        if site_id is None:
            raise AuthError("server key: malformed", code="invalid_server_key")
        try:
            ctx = await self.get(site_id)
        except NotFoundError:
            raise AuthError("server key: unknown", code="invalid_server_key") from None
        if not ctx.site.is_server_key(server_key):
            ctx = await self._refresh(site_id)  # rotated since cached: check Redis once
            if not ctx.site.is_server_key(server_key):
                raise AuthError("server key: unknown", code="invalid_server_key")
        return ctx

    async def refresh_dictionaries(self, ctx: SiteContext) -> None:
        """Learn codes other processes assigned since the last refresh."""
        await self.dictionary.refresh(ctx.site.id, ctx.data.vocab, _string_attrs(ctx.site))

    def forget(self, site_id: str) -> None:
        """Drop a cached site (after this process changed it); a load under way then
        does not cache what it read before the change."""
        self.contexts.pop(site_id, None)
        self._generations[site_id] = self._generations.get(site_id, 0) + 1


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _string_attrs(site: Site) -> list[str]:
    return [
        a.name
        for a in site.schema.layout.attributes.values()
        if a.kind in (Kind.CATEGORY, Kind.TAGS)
    ]
