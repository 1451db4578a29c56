"""The real app served on a real port (its own thread and event loop), on the suite's
private Redis, for clients that are not asyncio (schemathesis, hypothesis): background
loops off, so Redis changes only by requests."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web

from segserver.config import Settings, load_settings
from segserver.http import create_app
from segserver.storage.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN, snapshot

QUIET = {
    "expiry_interval_seconds": 0, "history_interval_seconds": 0, "trigger_poll_seconds": 0,
    "quota_sync_seconds": 0, "expired_sweep_per_second": 0, "redis_budget_ms": 2000,
}  # fmt: skip


@dataclass
class Served:
    """A running app: its URL, settings and a demo catalogue made through the API."""

    url: str
    settings: Settings
    site: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def snapshot(self) -> dict[bytes, Any]:
        return snapshot(self.settings.redis_url, self.settings.key_prefix)

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=30, **kw)


def serve(settings: Settings) -> Iterator[str]:
    """Run create_app(settings) in a thread; yield its base URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["port"] = runner.addresses[0][1]
        started.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert started.wait(60), "the app did not start"
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def make_catalogue(s: Served) -> None:
    """A site with one of everything, so that path parameters can name real items."""
    site = s.call("POST", "/v1/admin/sites", headers=s.admin(), json={
        "id": "fz", "origins": ["*"], "schema": {"attributes": [
            {"name": "tier", "kind": "category"}]}})  # fmt: skip
    assert site.status_code == 201, site.text
    s.site = site.json()
    base = "/v1/admin/sites/fz"
    for path, body in (
        ("segments", {"id": "seg", "status": "active",
                      "rule": {"attr": "page_views", "op": "gte", "value": 1}}),
        ("content", {"id": "con", "kind": "banner", "payload": {"title": "Hi"}}),
        ("placements", {"id": "pla", "kind": "banner", "default_content": "con"}),
        ("campaigns", {"id": "cam", "placement": "pla", "status": "active",
                       "audience": {"include": ["seg"]},
                       "variants": [{"id": "a", "content": "con"}]}),
        ("triggers", {"url": "https://hooks.example/x"}),
        ("tokens", {"name": "viewer", "role": "viewer"}),
    ):  # fmt: skip
        made = s.call("POST", f"{base}/{path}", headers=s.admin(), json=body)
        assert made.status_code == 201, made.text
    sent = s.call("POST", "/v1/context", headers={"X-Segserver-Key": s.site["site_key"]},
                  json={"visitor_id": "vis", "events": [{"type": "page_view"}]})  # fmt: skip
    assert sent.status_code == 200, sent.text


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis, data_dir: Path) -> Iterator[Served]:
    settings = load_settings(redis_url=redis_server.url, key_prefix=f"s{uuid.uuid4().hex[:10]}",
                             admin_token=ADMIN_TOKEN, data_dir=str(data_dir), shards=4,
                             **QUIET)  # fmt: skip
    for url in serve(settings):
        s = Served(url, settings)
        make_catalogue(s)
        yield s


#: What the fuzzing tests ran, printed at the end of the session.
FUZZ_STATS: dict[str, int] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FUZZ_STATS:
        terminalreporter.write_line(
            "fuzzing: " + ", ".join(f"{k} {v}" for k, v in sorted(FUZZ_STATS.items()))
        )
