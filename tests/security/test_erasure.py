"""Findings of issue 10 on what must leave no trace: erasure (streams, dead letters,
ordinals, due sets, bitmaps; exits emitted), TTL expiry (the same clean-up, sizes and
exports never count expired visitors), export of everything stored, and references
between catalogue items."""

from __future__ import annotations

from typing import Any

import redis

from segserver.config import Settings
from segserver.http.keys import SERVICES
from tests.conftest import Clock, admin_headers
from tests.security.helpers import Client, admin_post, app_with, make_site, site_key

BASE = "/v1/admin/sites/shop"
SEEN = {"attr": "page_views", "op": "gte", "value": 1}


def traces(settings: Settings, vid: str) -> list[str]:
    """Every place the visitor id still appears in Redis (keys, stream entries, ordinal
    maps, due sets, dead letters and retries)."""
    found = []
    needle = vid.encode()
    with redis.Redis.from_url(settings.redis_url) as r:
        for key in r.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
            kind = r.type(key)
            if needle in key.split(b":")[-1]:
                found.append(f"key {key!r}")
            elif kind == b"stream":
                found += [f"{key!r} {eid!r}" for eid, f in r.xrange(key) if f.get(b"v") == needle]
            elif kind == b"hash" and any(needle in v for v in r.hvals(key)):
                found.append(f"hash {key!r}")
            elif kind == b"zset" and r.zscore(key, vid) is not None:
                found.append(f"zset {key!r}")
            elif kind == b"list" and any(needle in v for v in r.lrange(key, 0, -1)):
                found.append(f"list {key!r}")
    return found


async def size(client: Client, segment: str) -> int:
    resp = await client.get(f"{BASE}/segments/{segment}/stats", headers=admin_headers())
    value: int = (await resp.json())["size"]
    return value


async def test_erasure_leaves_nothing_and_emits_exits(settings: Settings, clock: Clock) -> None:
    async with app_with(settings, clock, trigger_poll_seconds=0, trigger_retries=0) as client:
        site = await make_site(client, prebuilt=False)
        services = client.app[SERVICES]
        await admin_post(client, f"{BASE}/segments", {"id": "seen", "status": "active",
                                                      "rule": SEEN})  # fmt: skip
        await admin_post(client, f"{BASE}/triggers", {"url": "https://hooks.invalid/x"})
        for vid in ("zq9eve", "bob"):
            await client.post("/v1/context", headers=site_key(site), json={
                "visitor_id": vid, "events": [{"type": "page_view"}]})  # fmt: skip
        await services.trigger_runner.run_once(clock())  # fails: dead letters name eve
        assert any("dead" in t for t in traces(settings, "zq9eve"))
        export = await client.get(f"{BASE}/visitors/zq9eve/export", headers=admin_headers())
        data = await export.json()
        assert data["membership"]["segments"] == ["seen"]
        assert data["changes"] and data["dead_letters"] and data["profile"]

        resp = await client.delete(f"{BASE}/visitors/zq9eve", headers=admin_headers())
        assert resp.status == 204
        left = traces(settings, "zq9eve")
        # only the exit for trigger subscribers ("erase"), which goes once handed over
        assert len(left) == 1 and "changes" in left[0], left
        assert await size(client, "seen") == 1  # bob
        redriven = await client.post(f"{BASE}/triggers/dead-letters/redrive",
                                     headers=admin_headers(), json={})  # fmt: skip
        assert (await redriven.json())["redriven"] == 1  # bob's, never eve's
        await services.trigger_runner.run_once(clock())
        with redis.Redis.from_url(settings.redis_url) as r:
            stream = [k for k in r.scan_iter(match=f"{settings.key_prefix}:*changes")]
            entries = [f for k in stream for _, f in r.xrange(k) if f[b"v"] == b"zq9eve"]
        assert entries == []  # delivered (attempted), then deleted
        assert (await client.get(f"{BASE}/visitors/zq9eve/export",
                                 headers=admin_headers())).status == 404  # fmt: skip


async def test_expired_profiles_are_cleaned_up(settings: Settings, clock: Clock) -> None:
    async with app_with(settings, clock, expired_sweep_per_second=0) as client:
        site = await make_site(client, prebuilt=False)
        services = client.app[SERVICES]
        await admin_post(client, f"{BASE}/segments", {"id": "seen", "status": "active",
                                                      "rule": SEEN})  # fmt: skip
        for vid in ("zq9old", "zq9new"):
            await client.post("/v1/context", headers=site_key(site), json={
                "visitor_id": vid, "events": [{"type": "page_view"}]})  # fmt: skip
        assert await size(client, "seen") == 2
        # what a TTL does: the visitor's own keys are gone; the shard-wide ones stay
        vk = services.keys.visitor("shop", "zq9old")
        with redis.Redis.from_url(settings.redis_url) as r:
            r.delete(*vk.all())
        assert await size(client, "seen") == 2  # still counted: the finding
        checked, purged = await services.sweep.run_once(clock(), 100_000)
        assert (checked, purged) == (2, 1)
        assert await size(client, "seen") == 1
        assert traces(settings, "zq9old") == []
        csv = await client.get(f"{BASE}/segments/seen/members.csv", headers=admin_headers())
        assert (await csv.text()).splitlines() == ["visitor_id", "zq9new"]
        # a visitor who comes back gets a new ordinal and is counted once
        await client.post("/v1/context", headers=site_key(site), json={
            "visitor_id": "zq9old", "events": [{"type": "page_view"}]})  # fmt: skip
        assert await size(client, "seen") == 2


async def test_the_sweep_rests_after_a_whole_pass(settings: Settings, clock: Clock) -> None:
    """A whole pass over every visitor, then nothing until the rest is over (the sweep
    runs beside page views: a small site must not be re-read every second)."""
    async with app_with(settings, clock, expired_sweep_per_second=0) as client:
        site = await make_site(client, prebuilt=False)
        services = client.app[SERVICES]
        for i in range(30):
            await client.post("/v1/context", headers=site_key(site), json={
                "visitor_id": f"zq9v{i}", "events": [{"type": "page_view"}]})  # fmt: skip
        sweep = services.sweep
        wall = [1000.0]
        sweep.clock, sweep.rest_seconds = (lambda: wall[0]), 300.0
        scanned = []
        real = sweep.run_once

        async def counted(now: float, budget: int) -> tuple[int, int]:
            checked, purged = await real(now, budget)
            scanned.append(checked)
            return checked, purged

        sweep.run_once = counted  # type: ignore[method-assign]
        for _ in range(3):  # about 20 a round (whole chunks): the pass ends in round two
            await sweep.run_round(clock, 20)
        assert len(scanned) == 2 and sum(scanned) == 30, scanned  # each visitor once
        wall[0] += 299
        await sweep.run_round(clock, 20)
        assert len(scanned) == 2  # still resting
        wall[0] += 2
        await sweep.run_round(clock, 20)
        assert len(scanned) == 3 and scanned[-1] >= 20  # the next pass begins


async def test_references_must_exist_and_block_deletion(
    client: Client, site: dict[str, Any]
) -> None:
    await admin_post(client, f"{BASE}/content", {"id": "c", "kind": "banner",
                                                 "payload": {"title": "t"}})  # fmt: skip
    await admin_post(client, f"{BASE}/placements", {"id": "p", "kind": "banner",
                                                    "default_content": "c"})  # fmt: skip
    await admin_post(client, f"{BASE}/segments", {"id": "s", "rule": SEEN})
    bad = {"id": "k", "placement": "p", "audience": {"include": ["nope"]},
           "variants": [{"id": "a", "content": "c"}]}  # fmt: skip
    resp = await admin_post(client, f"{BASE}/campaigns", bad, status=400)
    assert resp["error"] == {
        "code": "unknown_reference",
        "message": "audience.include[0]: segment 'nope' does not exist",
    }
    for field, value in (("placement", "gone"), ("variants", [{"id": "a", "content": "gone"}])):
        resp = await admin_post(
            client,
            f"{BASE}/campaigns",
            {**bad, "audience": {"include": ["s"]}, field: value},
            status=400,
        )
        assert resp["error"]["code"] == "unknown_reference"
    await admin_post(client, f"{BASE}/campaigns", {**bad, "audience": {"include": ["s"]}})
    used = [("segments/s", "campaign 'k'"), ("content/c", "placement 'p', campaign 'k'"),
            ("placements/p", "campaign 'k'")]  # fmt: skip
    for path, users in used:
        resp = await client.delete(f"{BASE}/{path}", headers=admin_headers())
        assert resp.status == 409
        assert (await resp.json())["error"]["message"].endswith(f"is used by {users}")
    assert (await client.delete(f"{BASE}/campaigns/k", headers=admin_headers())).status == 204
    assert (await client.delete(f"{BASE}/segments/s", headers=admin_headers())).status == 204
