"""Segment analytics on a real redis-server: sizes, set expressions, overlap, preview,
export and static segments agree with evaluating every visitor one by one; recompute
and expiry leave static segments alone; size history is taken once per interval."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest
import pytest_asyncio

from segserver.catalogue.analytics import SegmentAnalytics, compile_expression
from segserver.catalogue.runtime import SiteContext
from segserver.demo import DEMO_SCHEMA, seed_profiles
from segserver.errors import SegserverError
from segserver.jobs.history import HistorySnapshotter
from segserver.membership import evaluate_visitor
from segserver.profile import codec
from segserver.storage.analytics import AnalyticsStore
from segserver.storage.bulk import BulkReader
from segserver.storage.jobs import ShardReader
from segserver.wiring import Services
from tests.conftest import Clock

DAY = 86400.0
VISITORS = 240
SEGMENTS = {
    "de": {"attr": "country", "op": "eq", "value": "DE"},
    "mobile": {"attr": "device", "op": "eq", "value": "mobile"},
    "buyers": {"attr": "orders", "op": "gte", "value": 1},
    "carters": {"attr": "cart_items", "op": "gt", "value": 0},
    "recent": {"attr": "last_order_at", "op": "within", "value": "30d"},
}


def analytics_of(services: Services) -> SegmentAnalytics:
    store = AnalyticsStore(services.clients.raw, services.scripts, services.keys)
    return SegmentAnalytics(
        store,
        ShardReader(services.clients.raw, services.keys),
        0,
        BulkReader(services.clients.raw, services.keys),
    )


@pytest_asyncio.fixture
async def shop(services: Services, clock: Clock) -> SiteContext:
    await services.sites.create({"id": "shop", "name": "Shop", "schema": DEMO_SCHEMA})
    ctx = await services.runtime.get("shop")
    for sid, rule in SEGMENTS.items():
        await services.segments.create("shop", {"id": sid, "status": "active", "rule": rule},
                                       ctx.data.schema.layout, ctx.data.vocab)  # fmt: skip
    stats = await seed_profiles(services, "shop", VISITORS, seed=4, chunk=100)
    assert (stats.visitors, stats.created) == (VISITORS, VISITORS)
    await services.recomputer.run("shop", clock.now)
    services.runtime.forget("shop")
    return await services.runtime.get("shop")


async def truth(services: Services, ctx: SiteContext, now: float) -> dict[str, set[str]]:
    """Members of every evaluated segment, evaluating each visitor on its own."""
    out: dict[str, set[str]] = {sid: set() for sid in ctx.current_program().segment_ids}
    for i in range(VISITORS):
        vid = f"demo-4-{i}"
        blob = await services.profiles.get("shop", vid)
        assert blob is not None
        item = evaluate_visitor(ctx, vid, blob, now)
        assert item is not None
        for sid, value in zip(ctx.current_program().segment_ids, item.values, strict=True):
            if value:
                out[sid].add(vid)
    return out


async def test_seeding_is_first_sight_bookkeeping(services: Services, shop: SiteContext) -> None:
    assert await services.profiles.count("shop") == VISITORS
    again = await seed_profiles(services, "shop", 10, seed=4)  # the same ids: left alone
    assert again.created == 0
    assert await services.profiles.count("shop") == VISITORS
    blob = await services.profiles.get("shop", "demo-4-7")
    assert blob is not None
    decoded = codec.to_json(blob, shop.data.schema.layout, shop.data.vocab)
    shard = services.keys.visitor("shop", "demo-4-7").shard
    ords = services.keys.shard_key("shop", shard, "ords")
    assert await services.clients.raw.hget(ords, decoded["ordinal"]) == b"demo-4-7"
    assert decoded["version"] == 1
    assert decoded["attributes"]["country"] in {"DE", "AT", "CH", "FR", "NL", "GB", "US", "ES",
                                                "IT", "PL"}  # fmt: skip


async def test_sizes_sets_and_overlap_equal_one_by_one(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    expected = await truth(services, shop, clock.now)
    analytics = analytics_of(services)
    ids = sorted(expected)
    sizes = await analytics.store.sizes("shop", [shop.segments[s].slot for s in ids])
    assert sizes == [len(expected[s]) for s in ids]
    assert all(0 < n < VISITORS for n in sizes), sizes  # a meaningful population

    cases: list[tuple[Any, set[str]]] = [
        ("de", expected["de"]),
        ({"or": ["de", "mobile"]}, expected["de"] | expected["mobile"]),
        ({"and": ["de", "mobile"]}, expected["de"] & expected["mobile"]),
        ({"and": ["buyers", {"not": "recent"}]}, expected["buyers"] - expected["recent"]),
        ({"and": ["mobile", {"or": ["de", "carters"]}, {"not": "buyers"}, {"not": "de"}]},
         (expected["mobile"] & expected["carters"]) - expected["buyers"] - expected["de"]),
    ]  # fmt: skip
    for expr, want in cases:
        count, sample, _ = await analytics.query(shop, expr)
        assert count == len(want), expr
        assert set(sample) <= want
        assert len(sample) == min(20, len(want))

    matrix = await analytics.overlap(shop, ids)
    assert matrix == [[len(expected[a] & expected[b]) for b in ids] for a in ids]


async def test_a_short_bitmap_excluded_keeps_the_long_ones_tail(
    services: Services, shop: SiteContext
) -> None:
    """AND NOT with an excluded bitmap shorter than the positive one (BITOP pads)."""
    vids = [f"demo-4-{i}" for i in range(VISITORS)]
    static = await services.segments.create(
        "shop", {"id": "few", "type": "static", "status": "active"},
        shop.data.schema.layout, shop.data.vocab,
    )  # fmt: skip
    services.runtime.forget("shop")
    ctx = await services.runtime.get("shop")
    analytics = analytics_of(services)
    await analytics.write_static("shop", static, vids[:1], replace=True)
    everyone = {"or": ["buyers", {"and": ["de", {"not": "buyers"}]}]}
    total, _, _ = await analytics.query(ctx, everyone)
    count, _, _ = await analytics.query(ctx, {"and": [everyone, {"not": "few"}]})
    inside = 1 if (await analytics.query(ctx, {"and": ["few", everyone]}))[0] else 0
    assert count == total - inside


async def test_preview_exact_and_estimated(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    rule = {"any": [{"attr": "country", "op": "eq", "value": "DE"},
                    {"attr": "orders", "op": "gte", "value": 1}]}  # fmt: skip
    expected = await truth(services, shop, clock.now)
    want = expected["de"] | expected["buyers"]
    analytics = analytics_of(services)
    exact = await analytics.preview(shop, rule, clock.now, 10_000, None)
    assert (exact["exact"], exact["method"], exact["count"]) == (True, "exact", len(want))
    assert set(exact["sample"]) <= want and len(exact["sample"]) == 20
    for seed in (1, 2, 3):
        est = await analytics.preview(shop, rule, clock.now, 100, seed)
        assert (est["exact"], est["method"], est["confidence"]) == (False, "sample", 0.95)
        low, high = est["interval"]
        assert low <= len(want) <= high, est
        assert low <= est["count"] <= high
        assert set(est["sample"]) <= want
    # a draft may refer to active segments
    ref = await analytics.preview(shop, {"segment": "de"}, clock.now, 10_000, None)
    assert ref["count"] == len(expected["de"])


async def test_export_streams_rows_with_decoded_attributes(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    expected = await truth(services, shop, clock.now)
    analytics = analytics_of(services)
    chunks = [c async for c in analytics.export_csv(shop, shop.segments["de"],
                                                    ["country", "orders"], chunk=5)]  # fmt: skip
    assert len(chunks) > 3  # header, then one chunk per ≤ 5 members of each shard
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert rows[0] == ["visitor_id", "country", "orders"]
    assert {r[0] for r in rows[1:]} == expected["de"]
    assert len(rows) - 1 == len(expected["de"])
    for vid, country, orders in rows[1:]:
        blob = await services.profiles.get("shop", vid)
        assert blob is not None
        attrs = codec.to_json(blob, shop.data.schema.layout, shop.data.vocab)["attributes"]
        assert country == "DE"
        assert orders == str(attrs.get("orders", ""))


async def static_members(services: Services, slot: int, vids: list[str]) -> set[str]:
    """Visitors whose own bitmap has `slot`, checked against the shard bitmaps."""
    found = set()
    for vid in vids:
        stored = await services.membership.read("shop", vid)
        if slot in stored.slots().tolist():
            found.add(vid)
    return found


async def test_static_upload_survives_recompute_and_expiry(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    vids = [f"demo-4-{i}" for i in range(VISITORS)]
    seg = await services.segments.create(
        "shop", {"id": "vips", "type": "static", "status": "active"},
        shop.data.schema.layout, shop.data.vocab,
    )  # fmt: skip
    analytics = analytics_of(services)
    added, unknown = await analytics.write_static("shop", seg, [*vids[:30], "nobody"],
                                                  replace=True)  # fmt: skip
    assert (added, unknown) == (30, ["nobody"])
    assert await analytics.size("shop", seg) == 30
    assert await static_members(services, seg.slot, vids) == set(vids[:30])

    await services.recomputer.run("shop", clock.now + 40 * DAY, "recompute")
    await services.expiry.run_once(clock.now + 80 * DAY)
    assert await analytics.size("shop", seg) == 30
    assert await static_members(services, seg.slot, vids) == set(vids[:30])

    added, _ = await analytics.write_static("shop", seg, vids[25:40], replace=True)
    assert added == 15
    assert await analytics.size("shop", seg) == 15
    assert await static_members(services, seg.slot, vids) == set(vids[25:40])
    await analytics.write_static("shop", seg, vids[:5], replace=False)
    assert await static_members(services, seg.slot, vids) == set(vids[25:40]) | set(vids[:5])


async def test_freeze_keeps_the_members_of_the_moment(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    expected = await truth(services, shop, clock.now)
    analytics = analytics_of(services)
    frozen = await services.segments.create(
        "shop", {"id": "recent-then", "type": "static", "status": "active"},
        shop.data.schema.layout, shop.data.vocab,
    )  # fmt: skip
    ids = await analytics.members_of(
        "shop", await analytics.store.segment_bitmaps("shop", shop.segments["recent"].slot)
    )
    await analytics.write_static("shop", frozen, ids, replace=True)
    assert await analytics.size("shop", frozen) == len(expected["recent"])
    await services.expiry.run_once(clock.now + 31 * DAY)  # every "recent" visitor expires
    assert await analytics.size("shop", shop.segments["recent"]) == 0
    assert await analytics.size("shop", frozen) == len(expected["recent"])


async def test_size_history_once_per_interval_with_two_schedulers(
    services: Services, shop: SiteContext, clock: Clock
) -> None:
    store = AnalyticsStore(services.clients.raw, services.scripts, services.keys)
    one, two = (HistorySnapshotter(services.runtime, store, 300, 90, site_ids=lambda: ["shop"])
                for _ in range(2))  # fmt: skip
    t0 = (clock.now // 300) * 300 + 10
    assert sum(await asyncio.gather(one.run_once(t0), two.run_once(t0))) == 1
    assert sum(await asyncio.gather(one.run_once(t0 + 200), two.run_once(t0 + 250))) == 0
    assert sum(await asyncio.gather(two.run_once(t0 + 300), one.run_once(t0 + 300))) == 1
    de = shop.segments["de"]
    size = await analytics_of(services).size("shop", de)
    assert await store.history("shop", de.slot, 0) == [(t0, size), (t0 + 300, size)]
    # 90 days on, the first points are dropped
    assert await one.run_once(t0 + 91 * DAY) == 1
    assert await store.history("shop", de.slot, 0) == [(t0 + 91 * DAY, size)]


def deep(levels: int) -> Any:
    expr: Any = "de"
    for _ in range(levels):
        expr = {"or": [expr]}
    return expr


async def test_expressions_name_the_bad_field(shop: SiteContext) -> None:
    bad: list[tuple[Any, str]] = [
        ({"and": ["de", "nope"]}, "expression.and[1]"),
        ({"xor": ["de"]}, "expression: unknown operator"),
        ({"or": []}, "expression.or"),
        ({"not": "de"}, "expression.not"),
        ({"and": [{"not": "de"}]}, "expression.and"),
        (42, "expression"),
        (deep(40), "expression.or[0]"),
    ]
    for expr, prefix in bad:
        with pytest.raises(SegserverError) as info:
            compile_expression(shop, expr)
        assert info.value.message.startswith(prefix), (expr, info.value.message)
        assert 400 <= {"invalid_input": 400, "not_found": 404}[info.value.code] < 500
