"""Every screen of the admin page at 1280 and 390 px wide, in headless Chromium: no
accessibility violation that axe-core finds (WCAG 2.0/2.1 A and AA: labels, names,
contrast, ARIA, keyboard access to scrolling regions), no sideways scrolling of the
page, and a screenshot (docs/screenshots/admin/ with E2E_SCREENSHOTS=1). Then the
first view and interaction times, printed, not asserted (timings belong in benchmarks)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.e2e.admin import go, open_admin, public, screenshot, seed_visitors
from tests.e2e.conftest import ADMIN_TOKEN, DemoServer

pytestmark = pytest.mark.e2e

WIDTHS = (1280, 390)
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: screen name → (hash, what shows that it is ready)
SCREENS = {
    "segments": ("segments", "#segment-results table"),
    "segment-builder": ("segments/cart_abandoners", "#preview-count:text-matches('visitors$')"),
    "analytics": ("analytics/new_visitors", "#members-count"),
    "content": ("content", "tr[data-content]"),
    "content-editor": ("content/popup_welcome", "iframe.preview-frame"),
    "campaigns": ("campaigns", "ol[data-placement]"),
    "campaign-editor": ("campaigns/demo_cart_rescue", "fieldset[data-path='audience.include']"),
    "who-wins": ("winners", "section.card table"),
    "results": ("results/e2e_results", "#results-table"),
    "visitor": ("visitors/e2e-seed-0", "#visitor-decisions"),
    "operations": ("ops", "#site-key"),
}


def results_campaign(server: DemoServer) -> None:
    """An A/B test with a holdout for the results screen: 90 visitors exposed through
    /v1/context, then a share of each arm adds to cart (the campaign's goal)."""
    if any(c["id"] == "e2e_results" for c in server.admin("GET", "/campaigns")["campaigns"]):
        return
    server.admin("POST", "/placements", {"id": "e2e_hero", "name": "E2E hero", "kind": "banner"})
    for cid, title in (("e2e_hero_a", "Spring sale"), ("e2e_hero_b", "Free returns")):
        server.admin("POST", "/content", {"id": cid, "kind": "banner", "payload": {"title": title}})
    server.admin("POST", "/campaigns", {
        "id": "e2e_results", "name": "Hero A/B test", "placement": "e2e_hero", "status": "active",
        "priority": 5, "holdout": 30, "goals": ["add_to_cart"],
        "variants": [{"id": "a", "content": "e2e_hero_a", "weight": 50},
                     {"id": "b", "content": "e2e_hero_b", "weight": 50}]})  # fmt: skip
    every = {"a": 2, "b": 4, None: 6}  # converts every 2nd exposed visitor of a, ...
    for i in range(90):
        vid = f"e2e-ab-{i}"
        answer = public(server, "/v1/context", {"visitor_id": vid, "placements": ["e2e_hero"]})
        decision = answer["decisions"]["e2e_hero"]
        arm = decision["variant"] if decision else None  # none: in the holdout
        if i % every[arm] == 0:
            public(server, "/v1/events", {"events": [{"visitor_id": vid, "type": "add_to_cart",
                                                      "properties": {"product_id": "p1",
                                                                     "price": 10}}]})  # fmt: skip


@pytest.fixture(scope="module")
def pages(browser: Any, demo_server: DemoServer) -> Iterator[dict[int, Any]]:
    """One signed-in page per width, shared by the screens."""
    seed_visitors(demo_server)
    results_campaign(demo_server)
    opened = {w: open_admin(browser, demo_server, w) for w in WIDTHS}
    yield {w: page for w, (_, page) in opened.items()}
    for ctx, _ in opened.values():
        ctx.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(SCREENS))
def test_screen_is_accessible_and_fits(
    pages: dict[int, Any], demo_server: DemoServer, name: str, width: int, tmp_path: Path
) -> None:
    page = pages[width]
    hash_, ready = SCREENS[name]
    go(page, demo_server, hash_)
    page.locator(ready).first.wait_for()
    if name == "content-editor":  # the SDK's renderer has drawn the preview
        page.frame_locator("iframe.preview-frame").locator(".segserver-popup").wait_for()
    assert page.locator("#alert").is_hidden(), page.locator("#alert").inner_text()
    found = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
    assert found.violations_count == 0, found.generate_report()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} scrolls sideways by {overflow} px at {width} px"
    screenshot(page, tmp_path, f"{name}-{width}")


def test_cards_view(pages: dict[int, Any], demo_server: DemoServer, tmp_path: Path) -> None:
    page = pages[1280]
    go(page, demo_server, "segments")
    page.get_by_role("button", name="Cards").click()
    cards = page.locator("ul.cards li")
    cards.first.wait_for()
    assert page.get_by_role("button", name="Cards").get_attribute("aria-pressed") == "true"
    assert cards.count() >= 13
    found = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
    assert found.violations_count == 0, found.generate_report()
    screenshot(page, tmp_path, "segments-cards-1280")
    page.get_by_role("button", name="List").click()
    page.locator("#segment-results table").wait_for()


def test_first_view_and_interaction_times(
    browser: Any, demo_server: DemoServer, pages: dict[int, Any], capsys: Any
) -> None:
    """First view: navigation start to the signed-in segment list (mark admin:first-view,
    its four API calls included), five fresh tabs. Interactions, the page's own work:
    drawing the list once its data came (measure admin:segments:draw), a structural
    edit of the builder (adding a condition: the click handler redraws synchronously)
    and a value edit (the input handler). Printed with the server's share for the report."""
    first, draws = [], []
    for _ in range(5):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.goto(f"{demo_server.origin}/admin/#token={ADMIN_TOKEN}")
        page.wait_for_function("performance.getEntriesByName('admin:first-view').length === 1")
        first.append(page.evaluate("performance.getEntriesByName('admin:first-view')[0].startTime"))
        draws.append(
            page.evaluate("performance.getEntriesByName('admin:segments:draw')[0].duration")
        )
        ctx.close()
    page = pages[1280]
    go(page, demo_server, "segments/cart_abandoners")
    page.locator("#preview-count:text-matches('visitors$')").wait_for()
    add, edit = [], []
    for _ in range(5):
        add.append(
            page.evaluate("""() => {
            const head = 'fieldset[data-path="rule.all"] > .group-head button';
            const b = [...document.querySelectorAll(head)]
                .find((x) => x.textContent === '+ Condition');
            const t = performance.now(); b.click(); return performance.now() - t; }""")
        )
        edit.append(
            page.evaluate("""() => {
            const v = document.querySelector('[data-path="rule.all[0].value"]');
            v.value = String(Number(v.value) + 1);
            const t = performance.now(); v.dispatchEvent(new Event('input', {bubbles: true}));
            return performance.now() - t; }""")
        )
    med = {
        k: round(statistics.median(v), 1)
        for k, v in {"first": first, "draw": draws, "add": add, "edit": edit}.items()
    }
    with capsys.disabled():
        print(
            f"\nadmin first view: {med['first']} ms after navigation start (median of 5, "
            f"runs {[round(x) for x in first]}); drawing the segment list {med['draw']} ms; "
            f"builder: add a condition {med['add']} ms, edit a value {med['edit']} ms"
        )
    assert len(first) == len(draws) == 5 and len(add) == len(edit) == 5
    assert page.locator(".clause").count() >= 5  # the conditions were added
