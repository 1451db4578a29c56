"""Wiring: every service of a running segserver, opened and closed together.

Used by the HTTP app (cleanup_ctx), the CLI and the tests; nothing here knows HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from segserver.catalogue.campaigns import ItemService
from segserver.catalogue.runtime import Runtime
from segserver.catalogue.segments import SegmentService
from segserver.catalogue.sites import SiteService
from segserver.config import Settings
from segserver.jobs.expiry import ExpiryScheduler
from segserver.jobs.recompute import Recomputer
from segserver.metrics import Metrics
from segserver.profile.events import Limits
from segserver.profile.ingest import Ingestor
from segserver.recommend import Recommender
from segserver.results import Results
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.client import Clients, create_clients
from segserver.storage.dictionary import DictionaryStore
from segserver.storage.jobs import JobStore, ShardReader
from segserver.storage.keys import Keys
from segserver.storage.membership import CapStore, DueStore, MembershipStore
from segserver.storage.models import Records
from segserver.storage.profiles import ProfileStore
from segserver.storage.recommendations import RecommendationStore
from segserver.storage.results import ResultStore
from segserver.storage.scripts import Scripts


@dataclass
class Services:
    settings: Settings
    clients: Clients
    scripts: Scripts
    keys: Keys
    profiles: ProfileStore
    dictionary: DictionaryStore
    sites: SiteService
    runtime: Runtime
    ingestor: Ingestor
    clock: Callable[[], float]
    catalogue: CatalogueStore
    segments: SegmentService
    membership: MembershipStore
    due: DueStore
    expiry: ExpiryScheduler
    jobs: JobStore
    recomputer: Recomputer
    items: dict[str, ItemService]
    caps: CapStore
    metrics: Metrics
    results: Results
    recommender: Recommender

    @classmethod
    def build(
        cls, settings: Settings, url: str | None = None, clock: Callable[[], float] = time.time
    ) -> Services:
        clients = create_clients(settings, url)
        scripts = Scripts(clients.raw)
        keys = Keys(settings.key_prefix, settings.shards)
        profiles = ProfileStore(
            clients.raw,
            scripts,
            keys,
            settings.dedup_window_seconds,
            settings.profile_ttl_days * 86400,
        )
        dictionary = DictionaryStore(clients.raw, scripts, keys)
        records = Records(clients.text, settings.key_prefix)
        sites = SiteService(records, settings.tag_slots)
        catalogue = CatalogueStore(clients.text, settings.key_prefix, Scripts(clients.text))
        segments = SegmentService(records, catalogue)
        items = {kind: ItemService(records, catalogue, kind)
                 for kind in ("placement", "content", "campaign")}  # fmt: skip
        runtime = Runtime(
            sites, segments, items, catalogue, dictionary, settings.catalogue_cache_seconds
        )
        limits = Limits(
            settings.max_string_length,
            settings.max_event_age_days * 86400.0,
            float(settings.max_event_skew_seconds),
            float(settings.session_gap_seconds),
        )
        ingestor = Ingestor(profiles, dictionary, limits)
        membership = MembershipStore(
            clients.raw, scripts, keys, settings.change_stream_max_length,
            settings.visitor_history_length, settings.profile_ttl_days * 86400,
        )  # fmt: skip
        due = DueStore(clients.raw, scripts, keys)
        expiry = ExpiryScheduler(runtime, due, membership, keys,
                                 lease=settings.expiry_lease_seconds)  # fmt: skip
        jobs = JobStore(clients.raw, keys)
        recomputer = Recomputer(runtime, ShardReader(clients.raw, keys), membership, keys, jobs)
        visitor_ttl = settings.profile_ttl_days * 86400
        results = Results(ResultStore(clients.raw, scripts, keys, visitor_ttl), runtime)
        recommender = Recommender(
            RecommendationStore(clients.raw, scripts, keys, settings.recently_viewed_length,
                                visitor_ttl),
            settings.recommendation_purchase_weight, settings.recommendation_cache_seconds,
        )  # fmt: skip
        return cls(
            settings, clients, scripts, keys, profiles, dictionary, sites, runtime, ingestor,
            clock, catalogue, segments, membership, due, expiry, jobs, recomputer, items,
            CapStore(scripts, keys, settings.profile_ttl_days * 86400 or 400 * 86400), Metrics(),
            results, recommender,
        )  # fmt: skip

    async def close(self) -> None:
        await self.clients.close()


@asynccontextmanager
async def open_services(
    settings: Settings, url: str | None = None, clock: Callable[[], float] = time.time
) -> AsyncIterator[Services]:
    services = Services.build(settings, url, clock)
    try:
        yield services
    finally:
        await services.close()
