"""Demo data: a demo site and synthetic visitors with plausible behaviour.

`seed_profiles` builds feature vectors directly in NumPy with the site's layout
(recency, frequency, spend, carts, countries, devices, e-mail engagement; strings
encoded through the site's dictionary), packs them in the stored format
(`segserver.profile.packed.encode_block`), writes them with one Lua call per shard and
chunk (lua/seed_profiles.lua) that does the per-shard ordinal bookkeeping
lua/apply_events.lua does on a visitor's first event (`seq` counter, `ords` hash,
ORDINAL in the header, the profile TTL; a visitor that exists is left alone), then
`seed_visitors` runs the bulk recompute so stored membership is right.
Measured rates are printed by `segserver demo` and `segserver bench segments`.

`visitor_events` (one visitor's event history) stays for load tests and the run
command's live traffic: it goes through the real event path.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.catalogue.sites import Site
from segserver.errors import ConflictError
from segserver.profile import packed
from segserver.profile.identity import shard_of, visitor_hash
from segserver.profile.schema import DAY_SECONDS, H_IDHASH, H_VERSION, WINDOW_DAYS
from segserver.storage.analytics import AnalyticsStore
from segserver.wiring import Services

DEMO_SITE = "demo"
DEMO_SCHEMA = {
    "attributes": [
        {"name": "loyalty_points", "kind": "number"},
        {"name": "newsletter", "kind": "flag"},
    ],
    "events": [{"name": "wishlist_add", "window": True}],
}
_COUNTRIES = ["DE", "AT", "CH", "FR", "NL", "GB", "US", "ES", "IT", "PL"]
_COUNTRY_P = [0.34, 0.08, 0.06, 0.1, 0.07, 0.1, 0.12, 0.05, 0.05, 0.03]
_DEVICES = ["mobile", "desktop", "tablet"]
_DEVICE_P = [0.58, 0.35, 0.07]
_SOURCES = ["google", "newsletter", "facebook", "instagram", "direct", "affiliate"]
_SOURCE_P = [0.38, 0.1, 0.12, 0.1, 0.22, 0.08]
_CATEGORIES = ["shoes", "shirts", "bags", "watches", "jackets", "hats"]
_LANGUAGES = {"DE": "de", "AT": "de", "CH": "de", "FR": "fr", "NL": "nl", "ES": "es", "IT": "it",
              "PL": "pl"}  # fmt: skip
F64 = npt.NDArray[np.float64]


async def ensure_demo_site(services: Services) -> Site:
    try:
        site = await services.sites.create(
            {"id": DEMO_SITE, "name": "Demo shop", "origins": ["*"], "schema": DEMO_SCHEMA}
        )
    except ConflictError:
        return await services.sites.get(DEMO_SITE)
    ctx = await services.runtime.get(site.id)
    await services.segments.install_prebuilt(site.id, ctx.data.schema.layout, ctx.data.vocab)
    services.runtime.forget(site.id)
    return site


def visitor_events(rng: random.Random, now: float) -> list[dict[str, Any]]:
    """One synthetic visitor's history over the last 60 days, oldest first."""
    events: list[dict[str, Any]] = []
    first = now - rng.uniform(0, 60) * 86400
    sessions = 1 + int(rng.paretovariate(1.5))
    country, device = rng.choice(_COUNTRIES), rng.choice(_DEVICES)
    for s in range(min(sessions, 30)):
        ts = first + (now - first) * (s / max(sessions, 1)) + rng.uniform(0, 3600)
        props = {"url": "/", "device": device, "country": country}
        if s == 0:
            props["utm_source"] = rng.choice(_SOURCES)
        events.append({"type": "page_view", "ts": ts, "properties": props})
        for _ in range(int(rng.expovariate(0.5))):
            ts += rng.uniform(10, 120)
            events.append({"type": "product_view", "ts": ts, "properties": {
                "product_id": f"p{rng.randrange(48)}", "category": rng.choice(_CATEGORIES),
                "price": round(rng.uniform(10, 300), 2)}})  # fmt: skip
        if rng.random() < 0.25:
            ts += 60
            events.append({"type": "add_to_cart", "ts": ts, "properties": {
                "product_id": f"p{rng.randrange(48)}", "price": round(rng.uniform(10, 300), 2),
                "quantity": 1}})  # fmt: skip
            if rng.random() < 0.4:
                value = round(rng.uniform(20, 900), 2)
                events.append({"type": "purchase", "ts": ts + 300, "properties": {"value": value}})
    if rng.random() < 0.3:
        events.append({"type": "email_open", "ts": now - rng.uniform(0, 20) * 86400})
    return [e for e in events if e["ts"] <= now]


@dataclass
class SeedStats:
    visitors: int = 0
    created: int = 0  # visitors that had no profile yet
    seconds: float = 0.0  # writing profiles
    recompute_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Visitors written per second (profiles and bookkeeping, before recompute)."""
        return self.visitors / self.seconds if self.seconds else 0.0


class _Columns:
    """A block of N empty profiles and setters by attribute name."""

    def __init__(self, template: bytes, n: int, layout: Any) -> None:
        self.block = np.tile(np.frombuffer(template, np.float64), (n, 1))
        self.f32 = self.block.view(np.float32)
        self.layout = layout
        self.rows = np.arange(n)

    def set(self, name: str, values: F64, where: npt.NDArray[np.bool_] | None = None) -> None:
        if name not in self.layout:
            return
        col = self.layout[name].index
        if where is None:
            self.block[:, col] = values
        else:
            self.block[where, col] = values[where]

    def window(self, name: str, day: F64, amount: F64, where: npt.NDArray[np.bool_]) -> None:
        """All of `amount` on `day` (days since the epoch) in the attribute's window."""
        if name not in self.layout or self.layout[name].window_index is None:
            return
        wi = int(self.layout[name].window_index)
        rows, d = self.rows[where], day[where].astype(np.int64)
        self.f32[rows, wi] = d
        self.f32[rows, wi + 1 + d % WINDOW_DAYS] = amount[where]


def _profiles(rng: np.random.Generator, n: int, now: float, layout: Any, template: bytes,
              codes: dict[str, list[int]]) -> F64:  # fmt: skip
    """N synthetic profiles (header ordinals and hashes are filled by the caller)."""
    c = _Columns(template, n, layout)
    day = float(DAY_SECONDS)
    first = now - rng.uniform(0, 180, n) * day
    last = np.maximum(first, now - rng.exponential(12, n) * day)
    sessions = 1 + np.minimum(np.floor(rng.pareto(1.5, n)), 200)
    views = sessions * (1 + rng.poisson(3, n).astype(np.float64))
    products = rng.poisson(views * 0.6).astype(np.float64)
    c.set("first_seen", first)
    c.set("last_seen", last)
    today = np.floor(last / day)
    everyone = np.ones(n, np.bool_)
    for name, values in (("sessions", sessions), ("page_views", views),
                         ("product_views", products)):  # fmt: skip
        c.set(name, values)
        c.window(name, today, values, everyone)
    cart = rng.random(n) < 0.2
    items = 1 + rng.poisson(1, n).astype(np.float64)
    c.set("cart_items", items, cart)
    c.set("cart_value", items * rng.lognormal(3.8, 0.6, n), cart)
    c.set("cart_updated_at", last - rng.uniform(0, 3 * 3600, n), cart)
    buyer = rng.random(n) < 0.3
    orders = rng.geometric(0.5, n).astype(np.float64)
    spent = np.round(orders * rng.lognormal(4.2, 0.7, n), 2)
    first_order = first + rng.random(n) * (last - first)
    last_order = first_order + rng.random(n) * (last - first_order)
    bought = {"orders": orders, "total_spent": spent, "first_order_at": first_order,
              "last_order_at": last_order}  # fmt: skip
    for name, values in bought.items():
        c.set(name, values, buyer)
    c.window("orders", np.floor(last_order / day), orders, buyer)
    c.window("total_spent", np.floor(last_order / day), spent, buyer)
    refund = buyer & (rng.random(n) < 0.05)
    c.set("refunds", np.ones(n), refund)
    c.set("refunded_total", spent * 0.3, refund)
    mailed = rng.random(n) < 0.6
    received = rng.poisson(10, n)
    opens = rng.binomial(received, 0.3)
    clicks = rng.binomial(opens, 0.3)
    c.set("emails_received", received.astype(np.float64), mailed)
    c.set("email_opens", opens.astype(np.float64), mailed)
    c.set("email_clicks", clicks.astype(np.float64), mailed)
    c.set("last_email_open_at", now - rng.uniform(0, 30, n) * day, mailed & (opens > 0))
    known = rng.random(n) < 0.35
    c.set("identified", np.ones(n), known)
    c.set("signup_at", first + rng.random(n) * (last - first), known)
    c.set("last_login_at", last, known)
    c.set("loyalty_points", np.floor(rng.exponential(300, n)), known)
    c.set("newsletter", (rng.random(n) < 0.5).astype(np.float64), known)
    born = (rng.random(n) < 0.3) & known
    c.set("birthday", np.floor(rng.uniform(-3650, 12800, n)) * day, born)
    wish = rng.random(n) < 0.15
    c.set("wishlist_add_count", 1 + rng.poisson(2, n).astype(np.float64), wish)
    c.set("wishlist_add_at", last, wish)
    country = rng.choice(len(_COUNTRIES), n, p=_COUNTRY_P)
    picks = {"country": country, "device": rng.choice(len(_DEVICES), n, p=_DEVICE_P),
             "source": rng.choice(len(_SOURCES), n, p=_SOURCE_P),
             "utm_source": rng.choice(len(_SOURCES), n, p=_SOURCE_P),
             "last_product_category": rng.integers(0, len(_CATEGORIES), n),
             "language": country}  # fmt: skip
    for name, which in picks.items():
        table = np.asarray(codes[name], np.float64)
        c.set(name, table[which], products > 0 if name == "last_product_category" else None)
    stage = np.where(buyer & (orders > 1), 3.0, np.where(buyer, 2.0, 1.0)) - 1
    c.set("lifecycle_stage", np.asarray(codes["lifecycle_stage"], np.float64)[stage.astype(int)])
    c.block[:, H_VERSION] = 1.0
    return c.block


async def _codes(services: Services, site_id: str) -> dict[str, list[int]]:
    """Dictionary codes of every string the generator uses (assigned if new)."""
    dictionary = services.dictionary
    langs = [_LANGUAGES.get(c, "en") for c in _COUNTRIES]
    values = {"country": _COUNTRIES, "device": _DEVICES, "source": _SOURCES,
              "utm_source": _SOURCES, "last_product_category": _CATEGORIES,
              "language": langs, "lifecycle_stage": ["lead", "customer", "repeat"]}  # fmt: skip
    return {attr: await dictionary.assign(site_id, attr, vals) for attr, vals in values.items()}


async def seed_profiles(
    services: Services, site_id: str, count: int, *, seed: int = 1, chunk: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> SeedStats:  # fmt: skip
    """Write `count` synthetic profiles (ids `demo-<seed>-<i>`) with their ordinals."""
    ctx = await services.runtime.get(site_id)
    layout = ctx.data.schema.layout
    codes = await _codes(services, site_id)
    keys, shards = services.keys, services.keys.shards
    ttl = services.settings.profile_ttl_days * 86400
    store = AnalyticsStore(services.clients.raw, services.scripts, keys)
    rng = np.random.default_rng(seed)
    now = services.clock()
    stats = SeedStats()
    started = time.perf_counter()
    for lo in range(0, count, chunk):
        ids = [f"demo-{seed}-{i}" for i in range(lo, min(lo + chunk, count))]
        block = _profiles(rng, len(ids), now, layout, layout.template, codes)
        shard = np.array([shard_of(v, shards) for v in ids], np.int64)
        block[:, H_IDHASH] = [visitor_hash(v) for v in ids]
        blobs = packed.encode_block(block, layout)
        calls = []
        for s in np.unique(shard):
            rows = np.flatnonzero(shard == s)
            calls.append(store.seed_profiles(
                site_id, int(s), [ids[r] for r in rows], [blobs[r] for r in rows], ttl
            ))  # fmt: skip
        # concurrent calls: Python packs one shard's call while Redis runs another's
        stats.created += sum(await asyncio.gather(*calls))
        stats.visitors += len(ids)
        if progress is not None:
            progress(stats.visitors)
    stats.seconds = time.perf_counter() - started
    return stats


async def seed_visitors(
    services: Services, site_id: str, count: int, *, seed: int = 1,
    progress: Callable[[int], None] | None = None,
) -> SeedStats:  # fmt: skip
    """Seed `count` visitors, then recompute stored membership at the services' clock."""
    stats = await seed_profiles(services, site_id, count, seed=seed, progress=progress)
    done = await services.recomputer.run(site_id, services.clock(), "recompute")
    stats.recompute_seconds = done.seconds
    return stats
