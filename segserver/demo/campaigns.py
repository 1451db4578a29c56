"""The demo shop's placements, content and campaigns (segserver/demo/shop/).

`install_demo_campaigns` creates what is missing and leaves what exists alone, so it
is idempotent and never overwrites a campaign manager's edits:

* `demo_popup` (popup): a welcome popup for new visitors (once per visitor) and, with
  a higher priority, a cart-abandoner popup (once per session);
* `demo_banner` (banner, default "free delivery"): a banner for high-value customers;
* `demo_recs` (recommendations, default "popular"): popular in the visitor's segment
  for high-value customers, new visitors and returning visitors.

The audiences are prebuilt segments (config/segments/) the demo site has.
"""

from __future__ import annotations

from typing import Any

from segserver.errors import ConflictError, NotFoundError
from segserver.wiring import Services

PLACEMENTS: list[dict[str, Any]] = [
    {"id": "demo_popup", "name": "Demo popup", "kind": "popup"},
    {"id": "demo_banner", "name": "Demo banner", "kind": "banner",
     "default_content": "banner_free_delivery"},
    {"id": "demo_recs", "name": "Demo recommendations", "kind": "recommendations",
     "default_content": "recs_popular"},
]  # fmt: skip

CONTENT: list[dict[str, Any]] = [
    {"id": "popup_welcome", "name": "Welcome popup", "kind": "popup", "payload": {
        "title": "Welcome to the demo shop!",
        "body": "10 % off your first order with the code WELCOME10.",
        "cta": "Start shopping", "link": "/demo/#products-title"}},
    {"id": "popup_cart_rescue", "name": "Cart rescue popup", "kind": "popup", "payload": {
        "title": "Still thinking it over?",
        "body": "Your cart is waiting for you, and delivery is free today.",
        "cta": "Back to my cart", "link": "/demo/cart.html"}},
    {"id": "banner_free_delivery", "name": "Free delivery banner", "kind": "banner",
     "payload": {"title": "Free delivery from 50 €", "body": "On every order, every day."}},
    {"id": "banner_vip", "name": "High-value customer banner", "kind": "banner", "payload": {
        "title": "Thank you for being one of our best customers",
        "body": "Free express delivery and early access to the new collection.",
        "cta": "See what's new", "link": "/demo/#products-title"}},
    {"id": "recs_popular", "name": "Popular products", "kind": "recommendations",
     "payload": {"strategy": "popular", "limit": 4, "title": "Popular right now"}},
    {"id": "recs_vip", "name": "Popular with our best customers", "kind": "recommendations",
     "payload": {"strategy": "popular_in_segment", "segment": "high_value_customers",
                 "limit": 4, "title": "Popular with our best customers"}},
    {"id": "recs_new", "name": "Popular with new visitors", "kind": "recommendations",
     "payload": {"strategy": "popular_in_segment", "segment": "new_visitors", "limit": 4,
                 "title": "Popular with first-time visitors"}},
    {"id": "recs_returning", "name": "Popular with returning visitors",
     "kind": "recommendations",
     "payload": {"strategy": "popular_in_segment", "segment": "returning_visitors",
                 "limit": 4, "title": "Popular with visitors like you"}},
]  # fmt: skip


def _campaign(cid: str, name: str, placement: str, include: str, priority: int,
              content: str, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"id": cid, "name": name, "placement": placement, "status": "active",
            "priority": priority, "audience": {"include": [include], "match": "any"},
            "variants": [{"id": "a", "content": content, "weight": 1}],
            "goals": ["purchase"], **extra}  # fmt: skip


CAMPAIGNS: list[dict[str, Any]] = [
    _campaign("demo_welcome", "Welcome popup", "demo_popup", "new_visitors", 10,
              "popup_welcome", group="demo_popups", caps=[{"per": "lifetime", "max": 1}]),
    _campaign("demo_cart_rescue", "Cart rescue popup", "demo_popup", "cart_abandoners", 50,
              "popup_cart_rescue", group="demo_popups", caps=[{"per": "session", "max": 1}]),
    _campaign("demo_vip_banner", "High-value customer banner", "demo_banner",
              "high_value_customers", 50, "banner_vip"),
    _campaign("demo_recs_vip", "Popular in segment: high-value", "demo_recs",
              "high_value_customers", 30, "recs_vip"),
    _campaign("demo_recs_returning", "Popular in segment: returning", "demo_recs",
              "returning_visitors", 20, "recs_returning"),
    _campaign("demo_recs_new", "Popular in segment: new", "demo_recs", "new_visitors", 10,
              "recs_new"),
]  # fmt: skip


async def install_demo_campaigns(services: Services, site_id: str) -> list[str]:
    """Create the demo's missing placements, content and campaigns (in that order:
    a campaign names its placement and content); returns the ids created."""
    created: list[str] = []
    for kind, items in (("placement", PLACEMENTS), ("content", CONTENT),
                        ("campaign", CAMPAIGNS)):  # fmt: skip
        service = services.items[kind]
        for item in items:
            try:
                await service.get(site_id, item["id"])
                continue
            except NotFoundError:
                pass
            try:
                await service.create(site_id, item)
            except ConflictError:  # another process created it meanwhile
                continue
            created.append(f"{kind}:{item['id']}")
    if created:
        services.runtime.forget(site_id)
    return created
