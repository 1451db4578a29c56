"""Helpers of the admin page's end-to-end tests (tests/e2e/test_admin_*.py): a signed-in
page that records every API request it makes, seeded visitors, screenshots published
to docs/screenshots/admin/ with E2E_SCREENSHOTS=1, and the public API of the demo site."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ADMIN_TOKEN, REPO, DemoServer

SEEDED = 40
POPUP = ".segserver-popup[role=dialog]"


def seed_visitors(server: DemoServer) -> None:
    """SEEDED visitors through the public API: every one viewed a page, every second one
    a product, every fourth one has a cart (`e2e-seed-<i>`). Idempotent by event ids."""
    events = []
    for i in range(SEEDED):
        vid = f"e2e-seed-{i}"
        events.append(
            {
                "visitor_id": vid,
                "type": "page_view",
                "event_id": f"{vid}-pv",
                "properties": {"url": "https://demo.example/"},
            }
        )
        if i % 2 == 0:
            events.append(
                {
                    "visitor_id": vid,
                    "type": "product_view",
                    "event_id": f"{vid}-v",
                    "properties": {"product_id": f"p{i % 48}"},
                }
            )
        if i % 4 == 0:
            events.append(
                {
                    "visitor_id": vid,
                    "type": "add_to_cart",
                    "event_id": f"{vid}-c",
                    "properties": {"product_id": f"p{i % 48}", "price": 20, "quantity": 1},
                }
            )
    public(server, "/v1/events", {"events": events})


def public(server: DemoServer, path: str, body: Any) -> Any:
    req = urllib.request.Request(
        f"{server.origin}{path}",
        method="POST",
        data=json.dumps(body).encode(),
        headers={"X-Segserver-Key": server.site_key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def admin_status(server: DemoServer, method: str, path: str, token: str = ADMIN_TOKEN) -> int:
    """The status of an admin request (for 404s and 403s)."""
    req = urllib.request.Request(
        f"{server.origin}/v1/admin/sites/demo{path}",
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class Recorder:
    """Every request a page sends to the API: (method, path without the query)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: Any) -> None:
        url = request.url.split("?", 1)[0]
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        if path.startswith("/v1/"):
            self.seen.append((request.method, path))


RECORDED = Recorder()


def open_admin(
    browser: Any, server: DemoServer, width: int = 1280, token: str = ADMIN_TOKEN
) -> tuple[Any, Any]:
    """A new browser context signed in with `token` (through the URL's fragment, as
    `segserver serve` prints it), showing the segment list; (context, page)."""
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    page.on("request", RECORDED)
    page.goto(f"{server.origin}/admin/#token={token}")
    page.locator("#segment-results").wait_for()
    return ctx, page


def go(page: Any, server: DemoServer, hash_: str) -> None:
    """Open a screen of the page (a hash change; the page stays loaded) and wait until
    it replaced the screen shown before and finished rendering (or reload it when it is
    the same address)."""
    url = f"{server.origin}/admin/#/{hash_}"
    page.evaluate("document.querySelectorAll('main .screen-title').forEach(e => e.dataset.old = 1)")
    if page.url == url:
        page.reload()
    else:
        page.goto(url)
    page.locator("main .screen-title:not([data-old])").first.wait_for()
    page.locator("main[data-rendered]").wait_for()  # its first API answers are shown too


def dismiss_popup(page: Any) -> None:
    page.locator(POPUP).wait_for()
    page.keyboard.press("Escape")
    page.locator(POPUP).wait_for(state="detached")


def screenshot(page: Any, tmp: Path, name: str) -> Path:
    """A screenshot in the test's folder, and in docs/screenshots/admin/ when
    E2E_SCREENSHOTS=1 asks for the README's pictures."""
    path = tmp / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("E2E_SCREENSHOTS") == "1":
        docs = REPO / "docs" / "screenshots" / "admin"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, docs / path.name)
    return path
