"""The composition root: every service of a running segserver, built once, by keyword,
and closed together. Used by the HTTP app (cleanup_ctx), the CLI and the tests; nothing
here knows HTTP (trigger delivery's HTTP client is handed in as `sender`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from segserver.catalogue.analytics import SegmentAnalytics
from segserver.catalogue.campaigns import ItemService
from segserver.catalogue.runtime import Runtime
from segserver.catalogue.segments import SegmentService
from segserver.catalogue.sites import SiteService
from segserver.catalogue.tokens import AdminTokens
from segserver.catalogue.triggers import TriggerService
from segserver.config import Settings
from segserver.flows.after_events import AfterEvents
from segserver.flows.console import Console
from segserver.flows.edits import Edits
from segserver.flows.events import Events
from segserver.flows.pageview import PageViews
from segserver.flows.visitors import Visitors
from segserver.flows.winners import Winners
from segserver.jobs.expiry import ExpiryScheduler
from segserver.jobs.history import HistorySnapshotter
from segserver.jobs.quota_sync import QuotaSync
from segserver.jobs.recompute import Recomputer
from segserver.jobs.sweep import ExpiredSweep
from segserver.jobs.triggers import (
    DeadLetters,
    Sender,
    SendError,
    TriggerOptions,
    TriggerRunner,
)
from segserver.metrics import Metrics
from segserver.profile.events import Limits
from segserver.profile.ingest import Ingestor
from segserver.recommend import Recommender
from segserver.results import Results
from segserver.storage.analytics import AnalyticsStore
from segserver.storage.bulk import BulkReader
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.changes import ChangeStore
from segserver.storage.client import Clients, create_clients
from segserver.storage.dictionary import DictionaryStore
from segserver.storage.erasure import ErasureStore
from segserver.storage.finish import FinishStore
from segserver.storage.jobs import JobStore, ShardReader
from segserver.storage.keys import Keys
from segserver.storage.membership import DueStore, MembershipStore
from segserver.storage.models import ITEM_KINDS, Records
from segserver.storage.profiles import ProfileStore
from segserver.storage.quotas import SiteQuotaStore
from segserver.storage.recommendations import RecommendationStore
from segserver.storage.results import ResultStore
from segserver.storage.scripts import Scripts
from segserver.storage.tokens import TokenStore
from segserver.trust.keyfile import stored_secret
from segserver.trust.quotas import Buckets, Quotas

DAY = 86400


# `timeout` is part of the Sender's signature
async def _no_delivery(url: str, body: bytes, headers: Mapping[str, str], timeout: float,  # noqa: ASYNC109
                       networks: Sequence[str] = ()) -> int:  # fmt: skip
    """The trigger sender of processes that do not deliver webhooks (CLI commands)."""
    raise SendError("this process does not deliver webhooks")


def token_secret(settings: Settings) -> bytes:
    """The key that signs decision tokens: its own setting, or a secret generated once
    and kept in the data directory (never derived from the admin token: a token in any
    page would let anyone test admin-token guesses offline)."""
    secret = settings.token_secret or stored_secret(settings.data_dir)
    return hashlib.sha256(f"segserver-tokens:{secret}".encode()).digest()


def _webhook_networks(runtime: Runtime) -> Callable[[str], Awaitable[Sequence[str]]]:
    """The internal networks each site allow-lists for its webhooks (site option)."""

    async def of(site: str) -> Sequence[str]:
        nets = (await runtime.get(site)).site.options.get("webhook_networks") or []
        return [str(n) for n in nets]

    return of


@dataclass
class Services:
    """Everything a request, a job or a command calls; built by `build_services`."""

    settings: Settings
    clock: Callable[[], float]
    metrics: Metrics
    clients: Clients
    scripts: Scripts
    keys: Keys
    profiles: ProfileStore
    dictionary: DictionaryStore
    membership: MembershipStore
    due: DueStore
    jobs: JobStore
    runtime: Runtime
    catalogue: CatalogueStore
    sites: SiteService
    segments: SegmentService
    items: dict[str, ItemService]
    ingestor: Ingestor
    pageviews: PageViews
    events: Events
    edits: Edits
    visitors: Visitors
    results: Results
    analytics: SegmentAnalytics
    console: Console  # what the admin page reads besides the API's resources
    winners: Winners
    recomputer: Recomputer
    expiry: ExpiryScheduler
    history: HistorySnapshotter | None
    triggers: TriggerService
    trigger_runner: TriggerRunner
    dead_letters: DeadLetters
    tokens: AdminTokens
    sweep: ExpiredSweep
    quotas: Quotas
    quota_sync: QuotaSync

    async def close(self) -> None:
        await self.quota_sync.store.close()
        await self.clients.close()


def build_services(
    settings: Settings, *, url: str | None = None, clock: Callable[[], float] = time.time,
    sender: Sender = _no_delivery,
) -> Services:  # fmt: skip
    """Build (but do not connect) every service for `url` (default settings.redis_url)."""
    s = settings
    visitor_ttl = s.profile_ttl_days * DAY
    metrics = Metrics()
    clients = create_clients(s, url, on_round_trip=metrics.redis_round_trips.inc)
    scripts = Scripts(clients.raw, clients.fast)
    keys = Keys(s.key_prefix, s.shards)
    records = Records(clients.text, s.key_prefix)
    catalogue = CatalogueStore(clients.text, s.key_prefix, Scripts(clients.text))
    profiles = ProfileStore(clients.raw, scripts, keys, s.dedup_window_seconds, visitor_ttl)
    dictionary = DictionaryStore(clients.raw, scripts, keys, s.max_dictionary_codes)
    membership = MembershipStore(
        client=clients.raw, scripts=scripts, keys=keys, stream_max=s.change_stream_max_length,
        history_len=s.visitor_history_length, ttl_seconds=visitor_ttl,
    )  # fmt: skip
    finish = FinishStore(
        scripts=scripts, keys=keys, stream_max=s.change_stream_max_length,
        history_len=s.visitor_history_length, ttl_seconds=visitor_ttl,
        caps_ttl_seconds=visitor_ttl or 400 * DAY, recent_length=s.recently_viewed_length,
        feedback_ttl_seconds=s.decision_token_ttl_seconds,
    )  # fmt: skip
    jobs = JobStore(clients.raw, keys, scripts)
    analytics_store = AnalyticsStore(clients.raw, scripts, keys)
    changes = ChangeStore(clients.text, keys)
    due = DueStore(clients.raw, scripts, keys)

    sites = SiteService(records, s.tag_slots)
    segments = SegmentService(records, catalogue)
    items = {kind: ItemService(records, catalogue, kind) for kind in ITEM_KINDS}
    runtime = Runtime(sites, segments, items, catalogue, dictionary, s.catalogue_cache_seconds)
    limits = Limits(s.max_string_length, s.max_event_age_days * 86400.0,
                    float(s.max_event_skew_seconds), float(s.session_gap_seconds))  # fmt: skip
    ingestor = Ingestor(profiles, dictionary, limits)
    recommender = Recommender(
        RecommendationStore(clients.raw, scripts, keys),
        purchase_weight=s.recommendation_purchase_weight,
        cache_seconds=s.recommendation_cache_seconds,
    )
    secret = token_secret(s)
    after = AfterEvents(finish_store=finish, membership=membership, keys=keys, metrics=metrics,
                        token_secret=secret)  # fmt: skip
    recomputer = Recomputer(
        runtime,
        BulkReader(clients.raw, keys),
        membership,
        keys,
        jobs,
        s.recompute_chunk,
        s.recompute_lease_seconds,
        s.recompute_retry_seconds,
    )
    triggers = TriggerService(records, changes)
    erasure = ErasureStore(clients.raw, scripts, keys, changes,
                           s.change_stream_max_length)  # fmt: skip
    analytics = SegmentAnalytics(
        analytics_store, ShardReader(clients.raw, keys), visitor_ttl, BulkReader(clients.raw, keys)
    )
    quotas = Quotas(
        key_requests=Buckets(s.quota_key_requests_per_minute),
        visitor_requests=Buckets(s.quota_visitor_requests_per_minute),
        visitor_events=Buckets(s.quota_visitor_events_per_minute),
        events_per_minute=s.quota_site_events_per_minute,
        new_visitors_per_minute=s.quota_site_new_visitors_per_minute,
    )
    return Services(
        settings=s, clock=clock, metrics=metrics, clients=clients, scripts=scripts, keys=keys,
        profiles=profiles, dictionary=dictionary, membership=membership, due=due, jobs=jobs,
        runtime=runtime, catalogue=catalogue, sites=sites, segments=segments, items=items,
        ingestor=ingestor,
        pageviews=PageViews(ingestor=ingestor, after=after, recommender=recommender,
                            metrics=metrics, budget_seconds=s.redis_budget_ms / 1000,
                            token_secret=secret, token_ttl=s.decision_token_ttl_seconds),
        events=Events(ingestor=ingestor, after=after, metrics=metrics,
                      max_events=s.max_events_per_request),
        edits=Edits(runtime=runtime, sites=sites, segments=segments, items=items,
                    catalogue=catalogue, recomputer=recomputer, profiles=profiles,
                    triggers=triggers),
        visitors=Visitors(runtime=runtime, profiles=profiles, erasure=erasure, changes=changes,
                          catalogue=catalogue),
        results=Results(ResultStore(clients.raw, keys), runtime),
        analytics=analytics,
        console=Console(runtime=runtime, analytics=analytics, ingestor=ingestor, after=after,
                        profiles=profiles, membership=membership),
        winners=Winners(analytics),
        recomputer=recomputer,
        expiry=ExpiryScheduler(runtime, due, membership, keys,
                               lease=s.expiry_lease_seconds),
        history=HistorySnapshotter(runtime, analytics_store, s.history_interval_seconds,
                                   float(s.history_retention_days))
        if s.history_interval_seconds > 0 else None,
        triggers=triggers,
        trigger_runner=TriggerRunner(changes, triggers, sender, TriggerOptions.from_settings(s),
                                     clock, networks_of=_webhook_networks(runtime)),
        dead_letters=DeadLetters(changes),
        tokens=AdminTokens(TokenStore(clients.text, s.key_prefix), s.admin_token),
        sweep=ExpiredSweep(runtime, erasure, changes, catalogue,
                           rest_seconds=s.expired_sweep_rest_seconds),
        quotas=quotas,
        quota_sync=QuotaSync(quotas, SiteQuotaStore(clients, keys)),
    )  # fmt: skip


@asynccontextmanager
async def open_services(
    settings: Settings, url: str | None = None, clock: Callable[[], float] = time.time,
    sender: Sender = _no_delivery,
) -> AsyncIterator[Services]:  # fmt: skip
    services = build_services(settings, url=url, clock=clock, sender=sender)
    try:
        yield services
    finally:
        await services.close()
