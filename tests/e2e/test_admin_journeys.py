"""The campaign manager's journeys through the admin page at /admin, in headless
Chromium against the real server and demo site: sign in; build a segment with nested
groups, watch the preview move, fix a validation error at its field, activate, see its
size; create content and a campaign, reorder priorities by drag and drop and watch the
demo shop's visitor get the winning content; read a visitor's explain; erase a
visitor; a keyboard-only pass over the builder. Fixtures: conftest.py and admin.py."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.admin import (
    RECORDED,
    admin_status,
    dismiss_popup,
    go,
    open_admin,
    screenshot,
    seed_visitors,
)
from tests.e2e.conftest import ADMIN_TOKEN, DemoServer

pytestmark = pytest.mark.e2e

SHOPPERS = "e2e_shoppers"
SHOPPERS_RULE = {
    "all": [
        {"attr": "page_views", "op": "gte", "value": 1},
        {
            "any": [
                {"attr": "product_views", "op": "gte", "value": 1},
                {
                    "all": [
                        {"attr": "cart_items", "op": "gt", "value": 0},
                        {"attr": "cart_value", "op": "gte", "value": 2},
                    ]
                },
            ]
        },
    ]
}


@pytest.fixture(scope="module")
def admin(browser: Any, demo_server: DemoServer) -> Iterator[Any]:
    """One signed-in admin page shared by the journeys (one browser for the session)."""
    seed_visitors(demo_server)
    ctx, page = open_admin(browser, demo_server)
    yield page
    ctx.close()


def _count(page: Any) -> int:
    text = page.locator("#preview-count").inner_text()
    match = re.fullmatch(r"([\d,]+) visitors", text)
    assert match, text
    return int(match.group(1).replace(",", ""))


def _wait_count(page: Any, want: int) -> None:
    page.wait_for_function(
        "want => document.querySelector('#preview-count').textContent === "
        "want.toLocaleString('en') + ' visitors'",
        arg=want,
    )


def _ensure_shoppers(server: DemoServer) -> None:
    """The journeys' segment, active (built through the page by the builder journey;
    created here when that test did not run first)."""
    found = {s["id"] for s in server.admin("GET", "/segments?per_page=500")["segments"]}
    if SHOPPERS not in found:
        server.admin(
            "POST",
            "/segments",
            {"id": SHOPPERS, "name": "E2E shoppers", "status": "active", "rule": SHOPPERS_RULE},
        )


def test_sign_in_with_a_token(browser: Any, demo_server: DemoServer, tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(f"{demo_server.origin}/admin")
    token = page.get_by_label("Admin token")
    token.wait_for()
    assert page.evaluate("document.activeElement.name") == "token"
    screenshot(page, tmp_path, "sign-in")
    token.fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("This token is not valid.").wait_for()
    assert page.locator("#nav").is_hidden()
    token.fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#segment-results table").wait_for()
    assert page.locator(".role").inner_text().lower() == "root"
    assert page.locator("#who").inner_text().count("demo") == 1
    rows = page.locator("#segment-results tbody tr")
    assert rows.count() >= 13  # the prebuilt segments
    # the token stays in this tab's session storage, never in the address
    assert ADMIN_TOKEN not in page.url
    assert ADMIN_TOKEN in page.evaluate("sessionStorage.getItem('segserver-admin')")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Admin token").wait_for()
    assert page.evaluate("sessionStorage.getItem('segserver-admin')") is None
    ctx.close()


def test_build_a_segment_with_nested_groups_preview_fix_activate(
    admin: Any, demo_server: DemoServer, tmp_path: Path
) -> None:
    page = admin
    go(page, demo_server, "segments/new")
    page.get_by_label("Name", exact=True).fill("E2E shoppers")
    assert page.get_by_label("ID", exact=True).input_value() == SHOPPERS  # derived from the name

    def leaf(path: str, attr: str, op: str, value: str) -> None:
        page.locator(f'[data-path="{path}.attr"]').fill(attr)
        page.locator(f'[data-path="{path}.op"]').select_option(op)
        page.locator(f'[data-path="{path}.value"]').fill(value)

    def add(group_path: str, what: str) -> None:
        head = page.locator(f'fieldset[data-path="{group_path}"] > .group-head')
        head.get_by_role("button", name=what).click()

    leaf("rule.all[0]", "page_views", "gte", "1")
    add("rule.all", "+ Group")  # rule.all[1]: any of
    leaf("rule.all[1].any[0]", "product_views", "gte", "1")
    add("rule.all[1].any", "+ Group")  # rule.all[1].any[1], made an all-of group
    page.locator('[data-focus="rule.all[1].any[1]#mode"]').select_option("all")
    leaf("rule.all[1].any[1].all[0]", "cart_items", "gt", "0")
    add("rule.all[1].any[1].all", "+ Condition")
    leaf("rule.all[1].any[1].all[1]", "cart_value", "gte", "2")

    # the text form follows the builder; the server prints it
    text = page.get_by_label("Text form")
    expect(text).to_have_value(
        "page_views >= 1 and (product_views >= 1 or cart_items > 0 and cart_value >= 2)"
    )

    # a validation error shows at its field, and goes when fixed
    attr = page.locator('[data-path="rule.all[1].any[0].attr"]')
    attr.fill("product_viewz")
    page.wait_for_selector('[data-path="rule.all[1].any[0].attr"][aria-invalid=true]')
    error = page.locator(f"#{attr.get_attribute('aria-describedby').split()[-1]}")
    assert 'unknown attribute "product_viewz"' in error.inner_text()
    expect(page.locator("#preview-detail")).to_have_text("Fix the rule to see who matches.")
    screenshot(page, tmp_path, "builder-error-at-field")
    attr.fill("product_views")
    expect(attr).not_to_have_attribute("aria-invalid", "true")
    expect(error).to_be_hidden()

    # the preview moves as a value changes (debounced; exact on the demo's few visitors)
    page.wait_for_function(
        "/^[\\d,]+ visitors$/.test(document.querySelector('#preview-count').textContent)"
    )
    matching = _count(page)
    assert matching >= 20  # the seeded visitors with a product view
    page.locator('[data-path="rule.all[0].value"]').fill("1000")
    _wait_count(page, 0)
    page.locator('[data-path="rule.all[0].value"]').fill("1")
    _wait_count(page, matching)
    sample = page.locator(".samples li a")
    assert sample.count() == min(20, matching)

    # the text form is editable too: the builder follows it
    text.fill(text.input_value().replace("cart_value >= 2", "cart_value >= 3"))
    value = page.locator('[data-path="rule.all[1].any[1].all[1].value"]')
    page.wait_for_function(
        "() => document.querySelector("
        "'[data-path=\"rule.all[1].any[1].all[1].value\"]')?.value === '3'"
    )
    assert value.input_value() == "3"
    screenshot(page, tmp_path, "builder-nested-groups")

    # activate: saved, recomputed, and its size shown
    page.get_by_role("button", name="Activate").click()
    page.wait_for_url(re.compile(f"#/segments/{SHOPPERS}\\?job="))
    size = page.locator("#segment-size")
    page.wait_for_function(
        "document.querySelector('#segment-size')?.textContent.startsWith('Size now')"
    )
    stats = demo_server.admin("GET", f"/segments/{SHOPPERS}/stats")
    assert size.inner_text() == f"Size now: {stats['size']:,} visitors"
    assert stats["size"] >= matching  # shop visitors of other tests may have joined since
    assert page.locator("#segment-status").inner_text() == "active"
    saved = demo_server.admin("GET", f"/segments/{SHOPPERS}")
    assert saved["rule"] == {
        **SHOPPERS_RULE,
        "all": [
            SHOPPERS_RULE["all"][0],
            {
                "any": [
                    SHOPPERS_RULE["all"][1]["any"][0],
                    {
                        "all": [
                            {"attr": "cart_items", "op": "gt", "value": 0},
                            {"attr": "cart_value", "op": "gte", "value": 3},
                        ]
                    },
                ]
            },
        ],
    }
    screenshot(page, tmp_path, "builder-activated")


def test_content_and_campaign_reordered_win_for_the_shop_visitor(
    admin: Any, browser: Any, demo_server: DemoServer, tmp_path: Path
) -> None:
    _ensure_shoppers(demo_server)
    page = admin
    # content, with the SDK's own renderer previewing it
    go(page, demo_server, "content/new")
    page.get_by_label("ID", exact=True).fill("e2e_picks")
    page.get_by_label("Name", exact=True).fill("E2E picks")
    page.get_by_label("Kind", exact=True).select_option("recommendations")
    page.get_by_label("Strategy", exact=True).select_option("popular")
    page.locator('[data-path="payload.title"]:visible').fill("Picked for e2e shoppers")
    frame = page.frame_locator("iframe.preview-frame")
    frame.locator(".segserver-recommendations strong").filter(
        has_text="Picked for e2e shoppers"
    ).wait_for()
    screenshot(page, tmp_path, "content-preview")
    page.get_by_role("button", name="Save").click()
    page.locator('tr[data-content="e2e_picks"]').wait_for()

    # a campaign on the recommendations placement, below the demo's own
    go(page, demo_server, "campaigns/new")
    page.get_by_label("ID", exact=True).fill("e2e_recs")
    page.get_by_label("Name", exact=True).fill("E2E picks for shoppers")
    page.get_by_label("Placement", exact=True).select_option("demo_recs")
    page.get_by_label("Status", exact=True).select_option("active")
    page.get_by_label("Priority", exact=True).fill("5")
    page.locator("fieldset[data-path='audience.include']").get_by_label("E2E shoppers").check()
    page.get_by_label("Content", exact=True).first.select_option("e2e_picks")
    page.get_by_role("button", name="Save campaign").click()
    recs = page.locator('ol[data-placement="demo_recs"]')
    recs.wait_for()
    order = recs.locator("li").evaluate_all("els => els.map(e => e.dataset.campaign)")
    assert order[-1] == "e2e_recs" and order[0] == "demo_recs_vip"

    # the shop's visitor: in the segment once its product view is stored, but the
    # demo's campaign for new visitors outranks ours
    shop_ctx = browser.new_context()
    shop = shop_ctx.new_page()
    with shop.expect_response(
        lambda r: (
            "/v1/events" in r.url
            and r.request.method == "POST"
            and "product_view" in (r.request.post_data or "")
        )
    ):
        shop.goto(f"{demo_server.origin}/demo/product.html?id=p3")
        dismiss_popup(shop)
    with shop.expect_response(lambda r: "/v1/context" in r.url) as before:
        shop.reload()
    body = before.value.json()
    assert SHOPPERS in body["segments"] and "new_visitors" in body["segments"], body
    assert body["decisions"]["demo_recs"]["campaign"] == "demo_recs_new"

    # reorder by drag and drop: ours to the top, saved as priorities
    rows = recs.locator("li")
    rows.filter(has_text="E2E picks for shoppers").drag_to(rows.first)
    assert recs.locator("li").first.get_attribute("data-campaign") == "e2e_recs"
    screenshot(page, tmp_path, "campaigns-reordered")
    with page.expect_response(
        lambda r: "/campaigns/e2e_recs" in r.url and r.request.method == "PATCH"
    ) as patched:
        page.locator("section").filter(has=recs).get_by_role("button", name="Save order").click()
    assert patched.value.json()["priority"] == 40
    page.get_by_text("Order of demo_recs saved").wait_for()

    # the shop's next page view shows the winner: our content
    with shop.expect_response(lambda r: "/v1/context" in r.url) as after:
        shop.reload()
    assert after.value.json()["decisions"]["demo_recs"]["campaign"] == "e2e_recs"
    slot = shop.locator("[data-segserver-placement=demo_recs]")
    slot.filter(has_text="Picked for e2e shoppers").wait_for()
    screenshot(shop, tmp_path, "shop-gets-the-winner")
    shop_ctx.close()


def test_read_a_visitors_explain_then_erase_it(
    admin: Any, browser: Any, demo_server: DemoServer, tmp_path: Path
) -> None:
    shop_ctx = browser.new_context()
    shop = shop_ctx.new_page()
    shop.goto(f"{demo_server.origin}/demo/")
    dismiss_popup(shop)  # the welcome popup: once per visitor (a lifetime cap of 1)
    vid = next(c["value"] for c in shop_ctx.cookies() if c["name"] == "segserver_vid")
    shop_ctx.close()

    page = admin
    go(page, demo_server, "visitors")
    page.get_by_label("Visitor id").fill(vid)
    page.get_by_role("button", name="Look up").click()
    decisions = page.locator("#visitor-decisions")
    decisions.wait_for()
    popup = decisions.locator('[data-placement="demo_popup"]')
    assert "default content" in popup.locator("h3").inner_text()
    welcome = popup.locator('li[data-campaign="demo_welcome"]').inner_text()
    assert welcome == "demo_welcome: frequency cap 1 per lifetime reached"
    rescue = popup.locator('li[data-campaign="demo_cart_rescue"]').inner_text()
    assert rescue == "demo_cart_rescue: audience not matched"
    new = page.locator('#visitor-segments tr[data-segment="new_visitors"]')
    assert new.locator("td").first.inner_text() == "in"
    assert "sessions" in new.locator("code").inner_text()
    cart = page.locator('#visitor-segments tr[data-segment="cart_abandoners"]')
    assert cart.locator("td").first.inner_text() == "out"
    assert "actual missing" in cart.inner_text()  # the clause that failed, and why
    history = page.locator("#visitor-history")
    assert "new_visitors" in history.inner_text() and "entered" in history.inner_text()
    screenshot(page, tmp_path, "visitor-explain")

    page.get_by_role("button", name="Erase (GDPR)").click()
    dialog = page.get_by_role("dialog")
    assert vid in dialog.inner_text()
    dialog.get_by_role("button", name="Erase").click()
    page.locator("#visitor-erased").wait_for()
    assert admin_status(demo_server, "GET", f"/visitors/{vid}") == 404
    assert admin_status(demo_server, "GET", f"/visitors/{vid}/history") == 404


def test_keyboard_only_pass_over_the_builder(
    admin: Any, demo_server: DemoServer, tmp_path: Path
) -> None:
    """Build and save a segment with the keyboard alone: every control is reached with
    Tab in reading order, has a visible focus and an accessible name."""
    page = admin
    go(page, demo_server, "segments/new")
    page.get_by_label("Name", exact=True).wait_for()
    page.wait_for_function("document.activeElement?.dataset.path === 'name'")  # focused on open
    page.keyboard.type("Keyboard made")

    visited: list[str] = []

    def focused() -> dict[str, Any]:
        info: dict[str, Any] = page.evaluate("""() => {
            const e = document.activeElement;
            const label = e.labels && e.labels.length ? e.labels[0].textContent
                : e.getAttribute('aria-label') || e.textContent;
            const style = getComputedStyle(e);
            return {tag: e.tagName, path: e.dataset.focus || e.dataset.path || '',
                    name: (label || '').trim(), outline: style.outlineStyle,
                    width: parseFloat(style.outlineWidth)};
        }""")
        return info

    def shift_tab_to(want: str) -> dict[str, Any]:
        return tab_to(want, key="Shift+Tab")

    def tab_to(want: str, limit: int = 30, key: str = "Tab") -> dict[str, Any]:
        for _ in range(limit):
            page.keyboard.press(key)
            now = focused()
            visited.append(now["path"] or now["name"])
            assert now["name"], f"a control without an accessible name: {now}"
            assert now["outline"] != "none" and now["width"] >= 2, f"no visible focus: {now}"
            if want in (now["path"], now["name"]):
                return now
        raise AssertionError(f"{want!r} not reached with Tab; visited {visited}")

    tab_to("rule.all[0].attr")
    page.keyboard.type("orders")
    tab_to("rule.all[0].op")
    page.keyboard.type("is at least")  # typing selects the option by its label
    assert page.locator('[data-path="rule.all[0].op"]').input_value() == "gte"
    tab_to("rule.all[0].value")
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    shift_tab_to("+ Condition")
    page.keyboard.press("Enter")  # a second condition; focus moves to its first control
    assert focused()["path"] == "rule.all[1]#type"
    tab_to("Remove this condition")
    page.keyboard.press("Enter")  # it goes again; focus moves to the group's match
    assert focused()["path"] == "rule#mode"
    assert page.locator(".clause").count() == 1
    expect(page.get_by_label("Text form")).to_have_value("all(orders >= 2)")
    # reading order: the fields, then the rule's controls in order, then the actions
    order = [
        visited.index(p)
        for p in (
            "id",
            "tags",
            "rule#mode",
            "rule.all[0]#type",
            "rule.all[0].attr",
            "rule.all[0].op",
            "rule.all[0].value",
        )
    ]
    assert order == sorted(order), visited
    tab_to("Save draft")
    with page.expect_response(lambda r: r.url.endswith("/segments") and r.request.method == "POST"):
        page.keyboard.press("Enter")
    page.wait_for_url(re.compile("#/segments/keyboard_made$"))
    saved = demo_server.admin("GET", "/segments/keyboard_made")
    assert (saved["status"], saved["rule"]) == (
        "draft",
        {"all": [{"attr": "orders", "op": "gte", "value": 2}]},
    )
    screenshot(page, tmp_path, "builder-keyboard")


def test_campaign_order_with_the_keyboard(admin: Any, demo_server: DemoServer) -> None:
    """The Move buttons reorder without a mouse; focus stays on the moved campaign."""
    page = admin
    go(page, demo_server, "campaigns")
    popup = page.locator('ol[data-placement="demo_popup"]')
    before = popup.locator("li").evaluate_all("els => els.map(e => e.dataset.campaign)")
    assert before == ["demo_cart_rescue", "demo_welcome"]
    page.get_by_role("button", name="Move Welcome popup up").focus()
    page.keyboard.press("Enter")
    after = popup.locator("li").evaluate_all("els => els.map(e => e.dataset.campaign)")
    assert after == ["demo_welcome", "demo_cart_rescue"]
    moved = page.evaluate("document.activeElement.closest('li').dataset.campaign")
    assert moved == "demo_welcome"  # focus moved with it (to its enabled Move button)
    page.get_by_text("Welcome popup moved to position 1 of 2").wait_for()
    section = page.locator("section").filter(has=popup)
    section.get_by_role("button", name="Undo").click()  # nothing was saved
    restored = popup.locator("li").evaluate_all("els => els.map(e => e.dataset.campaign)")
    assert restored == before
    assert demo_server.admin("GET", "/campaigns/demo_welcome")["priority"] == 10


def test_a_viewer_token_sees_everything_and_cannot_save(
    browser: Any, demo_server: DemoServer, tmp_path: Path
) -> None:
    made = demo_server.admin("POST", "/tokens", {"name": "e2e viewer", "role": "viewer"})
    ctx, page = open_admin(browser, demo_server, token=made["token"])
    assert page.locator(".role").inner_text().lower() == "viewer"
    assert page.get_by_role("link", name="New segment").count() == 0
    go(page, demo_server, "segments/cart_abandoners")
    page.locator("#preview-count:text-matches('visitors$')").wait_for()  # reads work
    for name in ("Save draft", "Save (active)", "Archive"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    page.get_by_text("Read only: a viewer token changes nothing.").wait_for()
    screenshot(page, tmp_path, "viewer-read-only")
    # the server refuses it anyway, and the page's client reports its error body
    refused = page.evaluate("""() => import('/admin/js/api.js').then((api) =>
        api.call('updateSegment', {segment: 'cart_abandoners'}, {body: {version: 1}})
           .then(() => null, (e) => [e.status, e.code]))""")
    assert refused == [403, "insufficient_role"]
    go(page, demo_server, "campaigns")
    assert page.get_by_role("button", name=re.compile("^Move ")).count() == 0
    go(page, demo_server, "visitors/e2e-seed-0")
    assert page.get_by_role("button", name="Erase (GDPR)").count() == 0
    go(page, demo_server, "ops")
    assert page.get_by_role("button", name="Create token").count() == 0
    ctx.close()
    demo_server.admin("DELETE", f"/tokens/{made['id']}")


def test_the_page_made_only_requests_the_spec_has(admin: Any, demo_server: DemoServer) -> None:
    """Every request the pages sent during these journeys (tests/e2e/admin.py records
    them) is an operation of /openapi.json."""
    with urllib.request.urlopen(f"{demo_server.origin}/openapi.json", timeout=10) as resp:
        spec = json.loads(resp.read())
    operations = [(m.upper(), re.compile("^" + re.sub(r"\{[a-z_]+\}", "[^/]+", p) + "$"))
                  for p, item in spec["paths"].items() for m in item]  # fmt: skip
    assert len(RECORDED.seen) > 50
    unknown = {(m, p) for m, p in RECORDED.seen
               if not any(m == om and o.match(p) for om, o in operations)}  # fmt: skip
    assert not unknown, unknown


def test_webhooks_show_their_deliveries(admin: Any, demo_server: DemoServer) -> None:
    """Operations: each webhook with its delivery counters and the retries waiting."""
    made = demo_server.admin("POST", "/triggers", {"url": "https://hooks.example/e2e"})
    try:
        page = admin
        go(page, demo_server, "ops")
        row = page.locator("tr", has=page.get_by_text("https://hooks.example/e2e"))
        expect(row.locator("td").nth(4)).to_have_text(
            re.compile(r"^(none yet|[\d,]+ delivered, [\d,]+ failed; last: (delivered|failed) .+)$")
        )
        expect(page.get_by_text(re.compile(r"(waiting for a retry now|No delivery is waiting)"))
               ).to_be_visible()  # fmt: skip
    finally:
        demo_server.admin("DELETE", f"/triggers/{made['id']}")
