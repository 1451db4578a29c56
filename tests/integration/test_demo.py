"""`segserver demo`'s fast seeding: profiles built in NumPy with the first-sight
bookkeeping of the event path, then stored membership from the bulk recompute."""

from __future__ import annotations

import random

from segserver.demo import ensure_demo_site, seed_profiles, seed_visitors, visitor_events
from segserver.membership import evaluate_visitor
from segserver.profile import codec, packed
from segserver.profile.schema import H_ORDINAL
from segserver.storage.analytics import AnalyticsStore
from segserver.wiring import Services
from tests.conftest import Clock


async def test_seeded_visitors_have_ordinals_and_stored_membership(
    services: Services, clock: Clock
) -> None:
    site = await ensure_demo_site(services)
    assert (await ensure_demo_site(services)).id == site.id  # idempotent
    stats = await seed_visitors(services, site.id, 150, seed=9)
    assert (stats.visitors, stats.created) == (150, 150)
    assert stats.rate > 0
    assert await services.profiles.count(site.id) == 150
    again = await seed_profiles(services, site.id, 160, seed=9)  # 150 exist: left alone
    assert (again.visitors, again.created) == (160, 10)
    assert await services.profiles.count(site.id) == 160

    ctx = await services.runtime.get(site.id)
    layout = ctx.data.schema.layout
    program = ctx.current_program()
    counts = dict.fromkeys(program.segment_ids, 0)
    ordinals: dict[int, set[int]] = {}
    for i in range(150):
        vid = f"demo-9-{i}"
        blob = await services.profiles.get(site.id, vid)
        assert blob is not None
        shard = services.keys.visitor(site.id, vid).shard
        assert blob[0] == packed.FORMAT
        ordinals.setdefault(shard, set()).add(int(codec.features(blob, layout)[H_ORDINAL]))
        item = evaluate_visitor(ctx, vid, blob, clock.now)
        assert item is not None
        stored = await services.membership.read(site.id, vid)
        assert stored.version == 1.0
        for sid, value in zip(program.segment_ids, item.values, strict=True):
            counts[sid] += int(value)
            assert (ctx.segments[sid].slot in stored.slots().tolist()) == bool(value), (vid, sid)
    # stored compactly: the target is 500 bytes for a typical visitor
    usage = [
        await services.clients.raw.memory_usage(
            services.keys.visitor(site.id, f"demo-9-{i}").profile
        )
        for i in range(150)
    ]
    assert sorted(usage)[75] <= 500, usage
    # dense ordinals per shard, as lua/apply_events.lua hands them out
    for shard, found in ordinals.items():
        assert found == set(range(len(found))), shard
    store = AnalyticsStore(services.clients.raw, services.scripts, services.keys)
    slots = [ctx.segments[sid].slot for sid in program.segment_ids]
    assert await store.sizes(site.id, slots) == list(counts.values())
    # plausible behaviour: some but not all visitors in the everyday segments
    for sid in ("mobile_visitors", "returning_visitors"):
        assert 0 < counts[sid] < 150, (sid, counts)


def test_visitor_events_still_describe_one_history() -> None:
    events = visitor_events(random.Random(1), 1_790_000_000.0)
    assert events and events[0]["type"] == "page_view"
    assert all(e["ts"] <= 1_790_000_000.0 for e in events)
