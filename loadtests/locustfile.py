"""Realistic shop traffic against segserver, as the JS SDK sends it.

Run by `python -m loadtests.run` (which seeds the site and passes the settings
below); by hand: `locust -f loadtests/locustfile.py --host http://127.0.0.1:8080`
with the environment set.

Settings (environment, all set by the runner):
  LOADTEST_SITE           site id (admin polling)
  LOADTEST_SITE_KEY       the site's key (X-Segserver-Key), what every page sends
  LOADTEST_SERVER_KEY     the site's server key: the shop's back end reports purchases
  LOADTEST_ADMIN_TOKEN    admin token (campaign manager)
  LOADTEST_VISITORS       size of the seeded population
  LOADTEST_ID_PREFIX      seeded visitor ids are <prefix><i>, i in [0, VISITORS)
  LOADTEST_ZIPF           Zipf exponent of visitor popularity (1.1)
  LOADTEST_THINK          think-time scale (1.0 = seconds like a person; 0.1 = 10× faster)
  LOADTEST_PLACEMENTS     placements asked for on every page, comma separated
  LOADTEST_CAMPAIGNS      campaign ids whose results the manager polls, comma separated
  LOADTEST_SAMPLES        file to write every request's (time, name, ms, ok) to, as CSV

Users and their weights (a shop funnel: of 100 sessions ~75 browse, ~8 add to cart,
~2-3 buy):
  BrowsingVisitor   70  landing page, then pages and product views; 8% of product
                        views add to cart, a third of carts check out and buy
  ReturningCustomer 20  the popular head of the population: login, pages, buys more
  CartAbandoner     10  views products, adds to cart, leaves; comes back later
  CampaignManager    1  (one user) lists segments with sizes, reads segment stats
                        and campaign results every 5-15 s
"""

from __future__ import annotations

import bisect
import csv
import itertools
import os
import random
import time
import uuid
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment

SITE = os.environ.get("LOADTEST_SITE", "bench")
SITE_KEY = os.environ.get("LOADTEST_SITE_KEY", "")
SERVER_KEY = os.environ.get("LOADTEST_SERVER_KEY", "")
ADMIN_TOKEN = os.environ.get("LOADTEST_ADMIN_TOKEN", "")
VISITORS = int(os.environ.get("LOADTEST_VISITORS", "1000"))
ID_PREFIX = os.environ.get("LOADTEST_ID_PREFIX", "demo-1-")
ZIPF = float(os.environ.get("LOADTEST_ZIPF", "1.1"))
THINK = float(os.environ.get("LOADTEST_THINK", "1.0"))
PLACEMENTS = [p for p in os.environ.get("LOADTEST_PLACEMENTS", "popup,hero").split(",") if p]
CAMPAIGNS = [c for c in os.environ.get("LOADTEST_CAMPAIGNS", "").split(",") if c]
SAMPLES = os.environ.get("LOADTEST_SAMPLES", "")

_COUNTRIES = ["DE", "AT", "CH", "FR", "NL", "GB", "US"]
_DEVICES = ["mobile", "desktop", "tablet"]
_SOURCES = ["google", "newsletter", "facebook", "direct"]
_CATEGORIES = ["shoes", "shirts", "bags", "watches", "jackets", "hats"]
_PRODUCTS = 500


class Zipf:
    """Visitor ranks 0..n-1 with P(rank k) ∝ 1/(k+1)^s (rank 0 the most frequent)."""

    def __init__(self, n: int, s: float) -> None:
        total = 0.0
        self.cdf: list[float] = []
        for k in range(1, n + 1):
            total += k**-s
            self.cdf.append(total)
        self.total = total

    def draw(self, rng: random.Random, head: float = 1.0) -> int:
        """A rank; `head` < 1 draws from the most popular part of the mass only."""
        rank = bisect.bisect_left(self.cdf, rng.random() * head * self.total)
        return min(rank, len(self.cdf) - 1)


_POPULATION = Zipf(max(VISITORS, 1), ZIPF)
_SAMPLES: list[tuple[float, str, float, int]] = []


def _record(request_type: str, name: str, response_time: float, exception: Any, **_: Any) -> None:
    _SAMPLES.append((time.time(), name, response_time, 0 if exception else 1))


def _dump(environment: Environment, **_: Any) -> None:
    if not SAMPLES:
        return
    with open(SAMPLES, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["t", "name", "ms", "ok"])
        out.writerows((f"{t:.3f}", n, f"{ms:.3f}", ok) for t, n, ms, ok in _SAMPLES)


events.request.add_listener(_record)  # type: ignore[no-untyped-call]  # locust: untyped
events.test_stop.add_listener(_dump)  # type: ignore[no-untyped-call]


def think(lo: float, hi: float) -> Any:
    return between(lo * THINK, hi * THINK)


class Shopper(HttpUser):
    """One browser: the SDK's request per page view, sessions of page views."""

    abstract = True
    wait_time = think(2, 8)
    head = 1.0  # which part of the popularity mass this kind of visitor comes from

    def on_start(self) -> None:
        self.rng = random.Random()
        self.new_session()

    def new_session(self) -> None:
        self.visitor = f"{ID_PREFIX}{_POPULATION.draw(self.rng, self.head)}"
        self.device = self.rng.choice(_DEVICES)
        self.country = self.rng.choice(_COUNTRIES)
        self.pages_left = 1 + int(self.rng.expovariate(1 / 5))  # mean ~6 pages a session
        self.cart: list[tuple[str, float]] = []
        self.landed = False
        self.pending: list[dict[str, Any]] = []  # events that ride with the next page

    def event(self, type_: str, **properties: Any) -> dict[str, Any]:
        return {
            "type": type_,
            "ts": time.time(),
            "event_id": uuid.uuid4().hex,
            "properties": properties,
        }

    def page_view(self, path: str) -> dict[str, Any]:
        props: dict[str, Any] = {
            "url": f"https://shop.example{path}",
            "device": self.device,
            "country": self.country,
            "language": "de",
        }
        if not self.landed:
            props["utm_source"] = self.rng.choice(_SOURCES)
            self.landed = True
        return self.event("page_view", **props)

    def product(self) -> tuple[str, float, str]:
        pid = f"p{min(int(self.rng.paretovariate(1.2)) - 1, _PRODUCTS - 1)}"
        return pid, round(self.rng.uniform(10, 300), 2), self.rng.choice(_CATEGORIES)

    def send_page(self, evts: list[dict[str, Any]], name: str) -> None:
        """POST /v1/context exactly as the SDK does."""
        evts, self.pending = self.pending + evts, []
        body = {"visitor_id": self.visitor, "events": evts, "placements": PLACEMENTS}
        with self.client.post(
            "/v1/context",
            json=body,
            headers={"X-Segserver-Key": SITE_KEY},
            name=f"/v1/context [{name}]",
            catch_response=True,
        ) as resp:
            # past its Redis budget the server answers the fallback with 200: count it
            if resp.ok and b'"degraded":true' in resp.content:
                resp.failure("degraded answer")
        self.pages_left -= 1
        if self.pages_left <= 0:
            self.new_session()

    def view_product(self) -> None:
        pid, price, category = self.product()
        evts = [
            self.page_view(f"/p/{pid}"),
            self.event("product_view", product_id=pid, price=price, category=category),
        ]
        if self.rng.random() < self.add_rate:
            evts.append(self.event("add_to_cart", product_id=pid, price=price, quantity=1))
            self.cart.append((pid, price))
        self.send_page(evts, "product")

    def checkout(self) -> None:
        """The checkout page (the browser), then the order as the shop's back end
        reports it: a purchase is a trusted event, sent with the server key."""
        value = round(sum(p for _, p in self.cart), 2)
        order = uuid.uuid4().hex[:12]
        self.send_page([self.page_view("/checkout"), self.event("checkout_start", value=value)],
                       "checkout")  # fmt: skip
        purchase = self.event("purchase", value=value, order_id=order,
                              items=[p for p, _ in self.cart])  # fmt: skip
        self.client.post("/v1/events", json=[{**purchase, "visitor_id": self.visitor}],
                         headers={"Authorization": f"Bearer {SERVER_KEY}"},
                         name="/v1/events [purchase]")  # fmt: skip
        self.cart = []

    add_rate = 0.08
    buy_rate = 0.33

    @task(35)
    def browse(self) -> None:
        path = self.rng.choice(["/", "/c/shoes", "/c/bags", "/sale", "/search?q=red"])
        self.send_page([self.page_view(path)], "page")

    @task(55)
    def product_page(self) -> None:
        self.view_product()

    @task(10)
    def cart_page(self) -> None:
        if self.cart and self.rng.random() < self.buy_rate:
            self.checkout()
        else:
            self.send_page([self.page_view("/cart")], "cart")


class BrowsingVisitor(Shopper):
    weight = 70


class ReturningCustomer(Shopper):
    """Known customers: the popular head of the population, who log in and buy more."""

    weight = 20
    head = 0.5
    add_rate = 0.15
    buy_rate = 0.6

    def new_session(self) -> None:
        super().new_session()
        self.pending.append(self.event("login"))


class CartAbandoner(Shopper):
    """Puts things in the cart and leaves; a later session sees the rescue campaign."""

    weight = 10
    add_rate = 0.5
    buy_rate = 0.0


class CampaignManager(HttpUser):
    """The admin page of one campaign manager: segment sizes and campaign results."""

    fixed_count = 1
    wait_time = think(5, 15)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        self.base = f"/v1/admin/sites/{SITE}"
        self.segments: list[str] = []
        self.rounds = itertools.count()
        with self.client.get(
            f"{self.base}/segments", name="admin segments", catch_response=True
        ) as resp:
            if resp.ok:
                items = resp.json()
                items = items.get("segments", items) if isinstance(items, dict) else items
                self.segments = [s["id"] for s in items if isinstance(s, dict) and "id" in s]
        self.has_stats = True

    @task
    def poll(self) -> None:
        n = next(self.rounds)
        self.client.get(f"{self.base}/segments", name="admin segments")
        if self.segments and self.has_stats:
            seg = self.segments[n % len(self.segments)]
            with self.client.get(
                f"{self.base}/segments/{seg}/stats", name="admin segment stats", catch_response=True
            ) as resp:
                if resp.status_code == 404:  # an older server without stats: stop asking
                    self.has_stats = False
                    resp.success()
        if CAMPAIGNS:
            camp = CAMPAIGNS[n % len(CAMPAIGNS)]
            self.client.get(f"{self.base}/campaigns/{camp}/results", name="admin campaign results")
