"""The demo shop in headless Chromium against the real server and a real
redis-server: the welcome popup, the cart-abandoner popup, the high-value banner,
consent, and the defaults when the server is down. Fixtures: tests/e2e/conftest.py."""

from __future__ import annotations

import collections
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CART_THRESHOLD_SECONDS, HIGH_VALUE_THRESHOLD, DemoServer, Shots

pytestmark = pytest.mark.e2e

SDK_TIMEOUT_MS = 300  # the SDK's default anti-flicker time-out
SHOP = Path(__file__).resolve().parents[2] / "segserver" / "demo" / "shop"
SDK = Path(__file__).resolve().parents[2] / "sdk_js" / "dist"
POPUP = ".segserver-popup[role=dialog]"
BANNER = "[data-segserver-placement=demo_banner]"


def _marks(page: Any) -> dict[str, float]:
    """The shop's Performance API marks (ms since navigation start)."""
    found: dict[str, float] = page.evaluate(
        "Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))"
    )
    return found


def _is(path: str, event: str | None = None) -> Callable[[Any], bool]:
    """A predicate on a POST to `path` (carrying an event of type `event`), for a
    Request or a Response."""

    def match(r: Any) -> bool:
        req = getattr(r, "request", r)
        if not (req.url.split("?")[0].endswith(path) and req.method == "POST"):
            return False
        events = json.loads(req.post_data or "{}").get("events", [])
        return event is None or any(e.get("type") == event for e in events)

    return match


def _holder(held: list[Any]) -> Callable[[Any], None]:
    """A route handler that keeps requests waiting (playwright wraps the handler, so
    it must be a Python function, not a builtin like list.append)."""

    def hold(route: Any) -> None:
        held.append(route)

    return hold


def _dismiss_welcome(page: Any) -> None:
    page.locator(POPUP).wait_for()
    page.keyboard.press("Escape")
    page.locator(POPUP).wait_for(state="detached")


def test_new_visitor_sees_welcome_popup_and_escape_returns_focus(
    demo_server: DemoServer, page: Any, shot: Shots
) -> None:
    # Hold the page's /v1/context until a product link has focus: focus must come
    # back to it when the popup closes (popups open from fresh answers, even late).
    held: list[Any] = []
    page.route("**/v1/context*", _holder(held))
    page.goto(f"{demo_server.origin}/demo/")
    page.locator("#products a.card").first.focus()
    page.wait_for_function("document.activeElement.dataset.productId === 'p0'")
    assert len(held) == 1
    with page.expect_response(_is("/v1/context")) as answer:
        held[0].continue_()
    body = answer.value.json()
    assert "new_visitors" in body["segments"]
    assert body["decisions"]["demo_popup"]["campaign"] == "demo_welcome"

    popup = page.locator(POPUP)
    popup.wait_for()
    assert popup.get_attribute("aria-modal") == "true"
    assert "Welcome" in popup.inner_text()
    assert page.evaluate("document.activeElement.classList.contains('segserver-close')")
    page.keyboard.press("Tab")  # the trap: close -> call to action -> close
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('segserver-close')")
    shot(page, "welcome-popup")

    with page.expect_request(_is("/v1/events", "dismiss")) as dismissed:
        page.keyboard.press("Escape")
        popup.wait_for(state="detached")
        assert page.evaluate("document.activeElement.dataset.productId") == "p0"
        shot(page, "welcome-dismissed")
    types = [e["type"] for e in json.loads(dismissed.value.post_data)["events"]]
    assert "dismiss" in types


def test_cart_abandoner_popup_after_threshold(
    demo_server: DemoServer, page: Any, shot: Shots
) -> None:
    page.goto(f"{demo_server.origin}/demo/product.html?id=p3")
    _dismiss_welcome(page)
    with page.expect_response(_is("/v1/events", "add_to_cart")) as stored:
        page.click("#add")
        added = time.monotonic()
    results = stored.value.json()["results"]
    assert results and all(r["status"] in ("stored", "duplicate") for r in results)
    shot(page, "added-to-cart")

    # Before the threshold: no abandoner popup (its own condition, not a sleep).
    with page.expect_response(_is("/v1/context")) as early:
        page.goto(f"{demo_server.origin}/demo/cart.html")
    if time.monotonic() - added < CART_THRESHOLD_SECONDS:
        assert "cart_abandoners" not in early.value.json()["segments"]
    # The short test threshold (the stock rule says 30 minutes): the one fixed wait.
    page.wait_for_timeout(max(0.0, CART_THRESHOLD_SECONDS + 0.3 - (time.monotonic() - added))
                          * 1000)  # fmt: skip
    with page.expect_response(_is("/v1/context")) as late:
        page.reload()
    body = late.value.json()
    assert "cart_abandoners" in body["segments"]
    assert body["decisions"]["demo_popup"]["campaign"] == "demo_cart_rescue"
    popup = page.locator(POPUP)
    popup.wait_for()
    assert "Still thinking it over?" in popup.inner_text()
    shot(page, "abandoner-popup")


def test_purchase_above_threshold_shows_high_value_banner(
    demo_server: DemoServer, page: Any, shot: Shots
) -> None:
    page.goto(f"{demo_server.origin}/demo/")
    _dismiss_welcome(page)
    banner = page.locator(BANNER)
    assert "Free delivery" in banner.inner_text()
    shot(page, "banner-before")

    products = page.evaluate("demoShop.products")
    dearest = max(products, key=lambda p: p["price"])
    page.goto(f"{demo_server.origin}/demo/product.html?id={dearest['id']}")
    for _ in range(math.ceil(HIGH_VALUE_THRESHOLD / dearest["price"]) + 1):
        page.click("#add")
    page.goto(f"{demo_server.origin}/demo/checkout.html")
    page.locator("#lines li").first.wait_for()
    # the purchase goes to the shop's back end (a trusted event), then the page view
    with page.expect_response(_is("/demo/checkout")) as bought, \
            page.expect_response(_is("/v1/context", "page_view")) as answer:  # fmt: skip
        page.click("#place-order")
    assert bought.value.status == 202
    body = answer.value.json()
    assert "high_value_customers" in body["segments"], body
    page.locator("#done").wait_for()
    shot(page, "order-placed")

    page.goto(f"{demo_server.origin}/demo/")
    page.wait_for_selector(f"{BANNER}[data-segserver-state=filled] .segserver-banner")
    assert "best customers" in banner.inner_text()
    assert page.locator(POPUP).count() == 0  # the welcome popup is shown once per visitor
    shot(page, "banner-high-value")


def test_no_request_without_consent(demo_server: DemoServer, page: Any, shot: Shots) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{demo_server.origin}/demo/product.html?id=p1&consent=required")
    page.locator("#consent").wait_for()
    page.click("#add")  # the shop tracks add_to_cart: the SDK must refuse it
    page.goto(f"{demo_server.origin}/demo/cart.html?consent=required")  # pagehide: no beacon
    page.locator("#consent").wait_for()
    # Nothing can be awaited for a request that must not happen: wait past the SDK's
    # batching window (flushDelay 1 s) once, then look.
    page.wait_for_timeout(1300)
    shot(page, "consent-required")
    api = [u for u in requests if "/v1/" in u]
    assert api == [], api
    own = {f"{demo_server.origin}/{p}" for p in ("sdk/segserver.js", "demo/config.js",
                                                 "demo/shop.js", "demo/shop.css")}  # fmt: skip
    assert {u.split("?")[0] for u in requests} <= own | {
        f"{demo_server.origin}/demo/product.html", f"{demo_server.origin}/demo/cart.html",
        f"{demo_server.origin}/favicon.ico"}  # fmt: skip
    assert page.context.cookies() == []
    stored = page.evaluate("[...Object.keys(localStorage), ...Object.keys(sessionStorage)]")
    assert [k for k in stored if k.startswith("segserver")] == []
    assert page.get_attribute(BANNER, "data-segserver-state") is None  # nothing hidden

    with page.expect_response(_is("/v1/context")) as answer:
        page.click("#accept")
    assert answer.value.status == 200
    assert [c["name"] for c in page.context.cookies()] == ["segserver_vid"]
    shot(page, "consent-given")


def _serve_from_disk(page: Any, origin: str, site_key: str) -> None:
    """The shop's files without the server (which is stopped): fulfilled by the
    browser's request interception from the files on disk; /v1/ still goes out."""
    config = f"window.segserverDemo = {json.dumps({'siteKey': site_key, 'endpoint': origin})};"

    def fulfil(route: Any) -> None:
        path = route.request.url.removeprefix(origin).split("?")[0]
        if path == "/demo/config.js":
            route.fulfill(body=config, content_type="text/javascript")
        elif path.startswith("/sdk/"):
            route.fulfill(path=str(SDK / path.removeprefix("/sdk/")))
        else:
            name = path.removeprefix("/demo/") or "index.html"
            route.fulfill(path=str(SHOP / name))

    page.route(f"{origin}/demo/**", fulfil)
    page.route(f"{origin}/sdk/**", fulfil)


def test_server_stopped_slots_show_defaults_within_timeout(
    demo_server: DemoServer, page: Any, shot: Shots
) -> None:
    demo_server.stop()
    try:
        _serve_from_disk(page, demo_server.origin, demo_server.site_key)
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(f"{demo_server.origin}/demo/")
        page.wait_for_selector(f"{BANNER}[data-segserver-state=default]")
        page.wait_for_selector("[data-segserver-placement=demo_recs][data-segserver-state=default]")
        assert "Free delivery from 50" in page.inner_text(BANNER)
        assert any("/v1/context" in u for u in failed)
        marks = _marks(page)
        shown = marks["segserver:demo_banner:default"] - marks["demo:init"]
        assert shown <= SDK_TIMEOUT_MS, marks
        shot(page, "server-stopped")
    finally:
        demo_server.start()


def test_hanging_server_slots_show_defaults_at_timeout(
    demo_server: DemoServer, page: Any, shot: Shots
) -> None:
    held: list[Any] = []
    page.route("**/v1/context*", _holder(held))  # an answer that never comes
    page.goto(f"{demo_server.origin}/demo/")
    page.wait_for_selector(f"{BANNER}[data-segserver-state=default]")
    assert "Free delivery from 50" in page.inner_text(BANNER)
    marks = _marks(page)
    shown = marks["segserver:demo_banner:default"] - marks["demo:init"]
    # The time-out fires after 300 ms, give or take the timer's scheduling.
    assert SDK_TIMEOUT_MS - 5 <= shown <= SDK_TIMEOUT_MS + 150, marks
    shot(page, "server-hanging")
    for route in held:
        route.abort()


def _time_to_slot(page: Any, url: str) -> dict[str, Any]:
    page.goto(url)
    page.wait_for_selector(f"{BANNER}[data-segserver-state]")
    page.wait_for_selector("[data-segserver-placement=demo_recs][data-segserver-state]")
    marks = _marks(page)
    page.wait_for_function(  # the answer may come after a cached slot was shown
        "performance.getEntriesByType('resource').some(e => e.name.includes('/v1/context'))"
    )
    ctx = page.evaluate(
        "performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/v1/context'))[0].toJSON()"
    )
    state = next(k for k in marks if k.startswith("segserver:demo_banner:"))
    return {"state": state.rsplit(":", 1)[1], "slot": marks[state], "init": marks["demo:init"],
            "round_trip": ctx["responseEnd"] - ctx["startTime"]}  # fmt: skip


def test_time_to_filled_slot(demo_server: DemoServer, browser: Any, capsys: Any) -> None:
    """Navigation start to the filled banner slot (Performance API) on the home page,
    for five new visitors' first and second page views; printed for the closing note,
    not asserted (timings belong in benchmarks)."""
    runs: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}
    for _ in range(5):
        ctx = browser.new_context()
        page = ctx.new_page()
        for view in ("first", "second"):
            runs[view].append(_time_to_slot(page, f"{demo_server.origin}/demo/"))
        ctx.close()
    lines = []
    for view, found in runs.items():
        med = {k: round(statistics.median(r[k] for r in found), 1)
               for k in ("slot", "init", "round_trip")}  # fmt: skip
        states = collections.Counter(r["state"] for r in found)
        lines.append(f"{view} page view: slot revealed at {med['slot']} ms after navigation "
                     f"start (median of 5; states {dict(states)}; SDK init at {med['init']} ms, "
                     f"/v1/context round trip {med['round_trip']} ms)")  # fmt: skip
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    # "default" is legitimate (an answer later than the 300 ms time-out); the rest of
    # the suite proves what each state shows.
    assert all(r["state"] in ("filled", "cached", "default") for f in runs.values() for r in f)
