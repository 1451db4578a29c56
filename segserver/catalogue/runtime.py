"""The per-process view of each site the request path uses, cached.

A site's record, schema, event types and dictionaries are read from Redis once
and then served from memory; an entry older than `ttl` seconds is refreshed in
the background while the old one keeps serving (no request waits for it, and
changes made by another process show within `ttl`).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from segserver.catalogue.sites import Site, SiteService, site_id_of_key
from segserver.errors import AuthError, NotFoundError
from segserver.profile.ingest import SiteData
from segserver.profile.schema import Kind
from segserver.storage.dictionary import DictionaryStore


@dataclass
class SiteContext:
    site: Site
    data: SiteData
    loaded_at: float


class Runtime:
    def __init__(
        self,
        sites: SiteService,
        dictionary: DictionaryStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sites = sites
        self.dictionary = dictionary
        self.ttl = ttl
        self.clock = clock
        self.contexts: dict[str, SiteContext] = {}
        self.refreshing: dict[str, asyncio.Task[SiteContext]] = {}

    async def _load(self, site_id: str) -> SiteContext:
        site = await self.sites.get(site_id)
        old = self.contexts.get(site_id)
        if old is not None and old.site.schema == site.schema:
            data = old.data
        else:
            data = SiteData.of(site.id, site.schema, old.data.vocab if old else None)
        await self.dictionary.refresh(site.id, data.vocab, _string_attrs(site))
        ctx = SiteContext(site, data, self.clock())
        self.contexts[site_id] = ctx
        return ctx

    async def get(self, site_id: str) -> SiteContext:
        """The site's context; raises NotFoundError for an unknown site."""
        ctx = self.contexts.get(site_id)
        if ctx is None:
            task = self.refreshing.get(site_id)
            if task is None:
                return await self._refresh(site_id)
            return await asyncio.shield(task)
        if self.clock() - ctx.loaded_at > self.ttl and site_id not in self.refreshing:
            self.refreshing[site_id] = asyncio.create_task(self._refresh(site_id))
        return ctx

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

    async def refresh_dictionaries(self, ctx: SiteContext) -> None:
        """Learn codes other processes assigned since the last refresh."""
        await self.dictionary.refresh(ctx.site.id, ctx.data.vocab, _string_attrs(ctx.site))

    def forget(self, site_id: str) -> None:
        """Drop a cached site (after this process changed it)."""
        self.contexts.pop(site_id, None)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _string_attrs(site: Site) -> list[str]:
    return [
        a.name
        for a in site.schema.layout.attributes.values()
        if a.kind in (Kind.CATEGORY, Kind.TAGS)
    ]
