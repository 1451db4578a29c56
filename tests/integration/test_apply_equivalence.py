"""Format 2 changes how profiles are stored, not what events do to them: random op
sequences applied by lua/apply_events.lua and by the format-1 script it replaced
(tests/cases/profiles/apply_events_format1.lua, commit 416b220) give the same features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segserver.profile import codec
from segserver.profile.ops import FLAG_WHEN_GAP, Op, Opcode, pack_ops
from segserver.profile.schema import DAY_SECONDS, H_ORDINAL, Schema
from segserver.wiring import Services

FORMAT1 = (
    Path(__file__).parents[1] / "cases" / "profiles" / "apply_events_format1.lua"
).read_text()
LAYOUT = Schema.from_json({"events": [{"name": "wish", "window": True}]}).layout
NOW = 1_790_000_000.0
TODAY = NOW // DAY_SECONDS
SCALAR = [LAYOUT[a].offset for a in ("page_views", "cart_value", "last_seen", "wish_at")]
WINDOW = [LAYOUT[a].window for a in ("page_views", "total_spent", "wish_count")]
TAGS = LAYOUT["tags"]
TAG_OPCODES = {Opcode.TAG_ADD, Opcode.TAG_REMOVE, Opcode.TAG_CLEAR}

values = st.one_of(
    st.integers(-3, 50).map(float), st.floats(-1e4, 1e4, allow_nan=False), st.just(NOW + 0.25)
)
scalar_ops = st.builds(
    Op,
    st.sampled_from(sorted(set(Opcode) - {Opcode.WINDOW_ADD, Opcode.CHECK_GAP} - TAG_OPCODES)),
    st.sampled_from(SCALAR),
    values,
    st.just(0.0),
    st.sampled_from([0, FLAG_WHEN_GAP]),
)
window_ops = st.builds(
    Op,
    st.just(Opcode.WINDOW_ADD),
    st.sampled_from(WINDOW),
    st.integers(-40, 40).map(lambda d: TODAY + d),
    st.one_of(st.integers(0, 3).map(float), st.floats(0, 500, allow_nan=False)),
    st.just(0),
)
gap_ops = st.builds(Op, st.just(Opcode.CHECK_GAP), st.sampled_from(SCALAR), values, st.just(1800.0),
                    st.just(0))  # fmt: skip
tag_ops = st.builds(
    Op,
    st.sampled_from(sorted(TAG_OPCODES)),
    st.just(TAGS.offset),
    st.just(float(TAGS.slots)),
    st.integers(1, 12).map(float),
    st.just(0),
)
events = st.lists(
    st.lists(st.one_of(scalar_ops, window_ops, gap_ops, tag_ops), max_size=8),
    min_size=1,
    max_size=4,
)


async def run(services: Services, raw_redis: Any, n: int, batches: list[list[list[Op]]]) -> None:
    old_sha = await raw_redis.script_load(FORMAT1)
    for vid, fmt in ((f"old{n}", 1), (f"new{n}", 2)):
        vk = services.keys.visitor("eq", vid)
        keys = [vk.profile, vk.event_ids, vk.shard_seq, vk.shard_ordinals, vk.bits, vk.caps]
        for batch in batches:
            per_event = [x for ops in batch for x in ("", pack_ops(ops))]
            if fmt == 1:
                args = [repr(NOW), 86400, 0, LAYOUT.template, vid, 7, *per_event]
                await raw_redis.evalsha(old_sha, len(keys), *keys, *args)
            else:
                args = [repr(NOW), 86400, 0, LAYOUT.window_slots, vid, 7, *per_event]
                await services.scripts.call("apply_events", keys, args)
    old = await services.profiles.get("eq", f"old{n}")
    new = await services.profiles.get("eq", f"new{n}")
    assert old is not None and new is not None and old[0] == 0 and new[0] == 2
    a, b = codec.features(old, LAYOUT).copy(), codec.features(new, LAYOUT).copy()
    a[H_ORDINAL] = b[H_ORDINAL] = 0  # two visitors: their own ordinals
    differ = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
    assert not differ.size, (differ, a[differ], b[differ])


COUNTER = iter(range(10**9))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(events, min_size=1, max_size=3))
async def test_format2_applies_ops_as_format1_did(
    services: Services, raw_redis: Any, batches: list[list[list[Op]]]
) -> None:
    # the fixtures live across examples: each example has its own visitors
    await run(services, raw_redis, next(COUNTER), batches)
