"""Demo data: a demo site and synthetic visitors with plausible behaviour."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from segserver.catalogue.sites import Site
from segserver.errors import ConflictError
from segserver.services import Services

DEMO_SITE = "demo"
DEMO_SCHEMA = {
    "attributes": [
        {"name": "loyalty_points", "kind": "number"},
        {"name": "newsletter", "kind": "flag"},
    ],
    "events": [{"name": "wishlist_add", "window": True}],
}
_COUNTRIES = ["DE", "AT", "CH", "FR", "NL", "GB", "US", "ES", "IT", "PL"]
_DEVICES = ["mobile", "desktop", "tablet"]
_SOURCES = ["google", "newsletter", "facebook", "instagram", "direct", "affiliate"]
_CATEGORIES = ["shoes", "shirts", "bags", "watches", "jackets", "hats"]


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
            events.append(
                {
                    "type": "product_view",
                    "ts": ts,
                    "properties": {
                        "product_id": f"p{rng.randrange(48)}",
                        "category": rng.choice(_CATEGORIES),
                        "price": round(rng.uniform(10, 300), 2),
                    },
                }
            )
        if rng.random() < 0.25:
            ts += 60
            events.append(
                {
                    "type": "add_to_cart",
                    "ts": ts,
                    "properties": {
                        "product_id": f"p{rng.randrange(48)}",
                        "price": round(rng.uniform(10, 300), 2),
                        "quantity": 1,
                    },
                }
            )
            if rng.random() < 0.4:
                events.append(
                    {
                        "type": "purchase",
                        "ts": ts + 300,
                        "properties": {"value": round(rng.uniform(20, 900), 2)},
                    }
                )
    if rng.random() < 0.3:
        events.append({"type": "email_open", "ts": now - rng.uniform(0, 20) * 86400})
    return [e for e in events if e["ts"] <= now]


async def seed_visitors(
    services: Services,
    site_id: str,
    count: int,
    *,
    seed: int = 1,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send `count` synthetic visitors' histories through the real event path."""
    ctx = await services.runtime.get(site_id)
    rng = random.Random(seed)
    now = services.clock()
    stored = 0
    for i in range(count):
        events = visitor_events(rng, now)
        for j in range(0, len(events), 100):
            result = await services.ingestor.ingest(
                ctx.data, events[j : j + 100], now, visitor_id=f"demo-{seed}-{i}"
            )
            stored += result.stored
        if progress is not None:
            progress(i + 1)
    return stored
