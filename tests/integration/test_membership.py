"""Stored membership on a real redis-server: visitors move in and out of segments as
events arrive and as time passes (injected clock), each move recorded once; the
bitset and the bitmaps never disagree; due visitors are processed once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis

from segserver.catalogue.runtime import SiteContext
from segserver.config import Settings
from segserver.jobs.expiry import ExpiryScheduler
from segserver.profile import codec
from segserver.profile.schema import H_ORDINAL
from segserver.wiring import Services
from tests.conftest import Clock

DAY = 86400.0
SEGMENTS = [
    {"id": "carters", "rule": {"attr": "cart_items", "op": "gt", "value": 0}},
    {"id": "recent_buyers", "rule": {"attr": "last_order_at", "op": "within", "value": "30d"}},
    {"id": "de", "rule": {"attr": "country", "op": "eq", "value": "DE"}},
]


@pytest_asyncio.fixture
async def shop(services: Services) -> SiteContext:
    await services.sites.create({"id": "shop", "name": "Shop"})
    ctx = await services.runtime.get("shop")
    for seg in SEGMENTS:
        await services.segments.create(
            "shop", {**seg, "status": "active"}, ctx.data.schema.layout, ctx.data.vocab
        )
    services.runtime.forget("shop")
    return await services.runtime.get("shop")


async def send(services: Services, ctx: SiteContext, vid: str, events: list[dict[str, Any]],
               now: float) -> None:  # fmt: skip
    """Events of one visitor, then the shared after-events step (evaluate, finish)."""
    result = await services.ingestor.ingest(ctx.data, events, now, visitor_id=vid)
    await services.pageviews.after.after_batch(ctx, result, now)


async def changes(services: Services, settings: Settings) -> list[tuple[str, str, str, str]]:
    """Every entry of every shard's change stream: (visitor, segment, change, cause)."""
    out = []
    client: aioredis.Redis = services.clients.raw
    for shard in range(settings.shards):
        for _, fields in await client.xrange(services.keys.changes("shop", shard)):
            out.append(tuple(fields[k].decode() for k in (b"v", b"s", b"c", b"why")))
    return sorted(out)  # type: ignore[arg-type]


async def stored_segments(services: Services, ctx: SiteContext, vid: str) -> set[str]:
    stored = await services.membership.read("shop", vid)
    by_slot = {s.slot: s.id for s in ctx.segments.values()}
    return {by_slot[int(s)] for s in stored.slots()}


async def test_moves_with_events_and_time(services: Services, shop: SiteContext,
                                          clock: Clock, settings: Settings) -> None:  # fmt: skip
    t0 = clock.now
    await send(services, shop, "ann", [
        {"type": "page_view", "properties": {"country": "DE"}},
        {"type": "add_to_cart", "properties": {"product_id": "p", "price": 10}},
    ], t0)  # fmt: skip
    assert await stored_segments(services, shop, "ann") == {"carters", "de"}
    await send(services, shop, "ann", [{"type": "purchase", "properties": {"value": 10}}], t0 + 60)
    assert await stored_segments(services, shop, "ann") == {"recent_buyers", "de"}
    # nothing changes by a page view: no new entries
    await send(services, shop, "ann", [{"type": "page_view"}], t0 + 120)

    expiry = services.expiry
    assert await expiry.run_once(t0 + 60 + 30 * DAY - 1) == 0  # not yet due
    assert await stored_segments(services, shop, "ann") == {"recent_buyers", "de"}
    assert await expiry.run_once(t0 + 60 + 30 * DAY + 0.5) == 1  # within a second of the mark
    assert await stored_segments(services, shop, "ann") == {"de"}
    assert await expiry.run_once(t0 + 60 + 31 * DAY) == 0  # nothing due any more

    assert await changes(services, settings) == sorted([
        ("ann", "carters", "entered", "event"), ("ann", "de", "entered", "event"),
        ("ann", "carters", "exited", "event"), ("ann", "recent_buyers", "entered", "event"),
        ("ann", "recent_buyers", "exited", "expiry"),
    ])  # fmt: skip
    history = await services.membership.history("shop", "ann")
    moves = [(h["segment"], h["change"], h["cause"]) for h in history]  # newest first
    assert moves[:3] == [
        ("recent_buyers", "exited", "expiry"), ("recent_buyers", "entered", "event"),
        ("carters", "exited", "event"),
    ]  # fmt: skip
    assert sorted(moves[3:]) == [("carters", "entered", "event"), ("de", "entered", "event")]
    assert [h["time"] for h in history][:1] == [t0 + 60 + 30 * DAY + 0.5]


async def bitmaps_agree(services: Services, ctx: SiteContext, vids: list[str]) -> None:
    client: aioredis.Redis = services.clients.raw
    for vid in vids:
        vk = services.keys.visitor("shop", vid)
        blob = await services.profiles.get("shop", vid)
        assert blob is not None
        ordinal = int(codec.features(blob, ctx.data.schema.layout)[H_ORDINAL])
        stored = await stored_segments(services, ctx, vid)
        for seg in ctx.segments.values():
            bit = await client.getbit(services.keys.segment_bitmap("shop", vk.shard, seg.slot),
                                      ordinal)  # fmt: skip
            assert bool(bit) == (seg.id in stored), (vid, seg.id)


async def test_concurrent_events_keep_bitset_and_bitmaps_in_agreement(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    async def flip(i: int) -> None:
        kind = "add_to_cart" if i % 2 == 0 else "remove_from_cart"
        event = {"type": kind, "properties": {"product_id": "p", "price": 5}}
        await send(services, shop, "bob", [event], clock.now + i)

    await asyncio.gather(*(flip(i) for i in range(200)))
    await bitmaps_agree(services, shop, ["bob"])
    # the final stored state is the evaluation of the final profile
    await send(services, shop, "bob", [{"type": "page_view"}], clock.now + 1000)
    blob = await services.profiles.get("shop", "bob")
    assert blob is not None
    await bitmaps_agree(services, shop, ["bob"])
    layout = shop.data.schema.layout
    cart_items = float(codec.features(blob, layout)[layout["cart_items"].index])
    assert ("carters" in await stored_segments(services, shop, "bob")) == (cart_items > 0)


async def test_two_schedulers_process_each_due_visitor_once(
    services: Services, shop: SiteContext, clock: Clock, settings: Settings
) -> None:
    t0 = clock.now
    vids = [f"v{i}" for i in range(120)]
    for vid in vids:
        await send(services, shop, vid, [{"type": "purchase", "properties": {"value": 1}}], t0)
    other = ExpiryScheduler(services.runtime, services.due, services.membership, services.keys,
                            batch=7)  # fmt: skip
    later = t0 + 30 * DAY + 1
    counts = await asyncio.gather(services.expiry.run_once(later), other.run_once(later))
    assert sum(counts) == 120
    exits = Counter(v for v, s, c, why in await changes(services, settings) if why == "expiry")
    assert exits == dict.fromkeys(vids, 1)
    await bitmaps_agree(services, shop, vids[:10])


async def test_a_crashed_claimers_work_is_taken_over(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    t0 = clock.now
    await send(services, shop, "cat", [{"type": "purchase", "properties": {"value": 1}}], t0)
    shard = services.keys.visitor("shop", "cat").shard
    due = t0 + 30 * DAY + 1
    # a scheduler claims the visitor with a 30 s lease, then dies without committing
    assert await services.due.claim("shop", shard, due, 30, 100) == ["cat"]
    assert await services.expiry.run_once(due + 10) == 0  # still leased
    assert await stored_segments(services, shop, "cat") == {"recent_buyers"}
    assert await services.expiry.run_once(due + 31) == 1  # lease over: taken over
    assert await stored_segments(services, shop, "cat") == set()
    assert await services.expiry.run_once(due + 100) == 0


async def test_deleting_a_visitor_clears_its_bits(services: Services, shop: SiteContext,
                                                  clock: Clock) -> None:  # fmt: skip
    await send(services, shop, "dan", [{"type": "page_view", "properties": {"country": "DE"}}],
               clock.now)  # fmt: skip
    vk = services.keys.visitor("shop", "dan")
    blob = await services.profiles.get("shop", "dan")
    assert blob is not None
    ordinal = int(codec.features(blob, shop.data.schema.layout)[H_ORDINAL])
    de = shop.segments["de"].slot
    bitmap = services.keys.segment_bitmap("shop", vk.shard, de)
    assert await services.clients.raw.getbit(bitmap, ordinal) == 1
    await services.visitors.erase("shop", "dan", clock.now)
    assert await services.clients.raw.getbit(bitmap, ordinal) == 0
    assert not await services.clients.raw.exists(*vk.all())
