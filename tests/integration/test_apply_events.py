"""lua/apply_events.lua on a real redis-server: every opcode, windows, atomicity."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from segserver.errors import StorageError
from segserver.profile.ops import FLAG_WHEN_GAP, Op, Opcode, pack_ops
from segserver.profile.schema import DAY_SECONDS, H_IDHASH, H_ORDINAL, H_VERSION, Schema
from segserver.wiring import Services

LAYOUT = Schema().layout
NOW = 1_790_000_000.0
TODAY = NOW // DAY_SECONDS


async def apply(services: Services, vid: str, *events: list[Op], ids: list[str] | None = None):
    batch = [((ids or [None] * len(events))[i], pack_ops(ops)) for i, ops in enumerate(events)]
    return await services.profiles.apply("s", vid, LAYOUT.template, batch, NOW)


def f64(blob: bytes) -> np.ndarray:
    return np.frombuffer(LAYOUT.pad(blob), np.float64)


def value(blob: bytes, attr: str) -> float:
    return float(f64(blob)[LAYOUT[attr].index])


def window(blob: bytes, attr: str) -> dict[int, float]:
    idx = LAYOUT[attr].window_index
    assert idx is not None
    f32 = f64(blob).view(np.float32)
    head = int(f32[idx])
    return {
        d: float(f32[idx + 1 + d % 35]) for d in range(head - 34, head + 1) if f32[idx + 1 + d % 35]
    }


async def test_scalar_ops(services: Services) -> None:
    off = LAYOUT["cart_items"].offset
    done = await apply(services, "a", [
        Op(Opcode.ADD, off, 3), Op(Opcode.SUB_FLOOR, off, 5),  # floors at 0
        Op(Opcode.SET, LAYOUT["cart_value"].offset, 9.5),
        Op(Opcode.MAX, LAYOUT["last_seen"].offset, 10),
        Op(Opcode.MAX, LAYOUT["last_seen"].offset, 5),
        Op(Opcode.MIN, LAYOUT["first_seen"].offset, 10),
        Op(Opcode.MIN, LAYOUT["first_seen"].offset, 5),
        Op(Opcode.SET_IF_MISSING, LAYOUT["signup_at"].offset, 1),
        Op(Opcode.SET_IF_MISSING, LAYOUT["signup_at"].offset, 2),
        Op(Opcode.SET, LAYOUT["orders"].offset, 4), Op(Opcode.UNSET, LAYOUT["orders"].offset),
    ])  # fmt: skip
    blob = done.profile
    assert value(blob, "cart_items") == 0
    assert value(blob, "cart_value") == 9.5
    assert value(blob, "last_seen") == 10
    assert value(blob, "first_seen") == 5
    assert value(blob, "signup_at") == 1
    assert math.isnan(value(blob, "orders"))
    header = f64(blob)
    assert header[H_VERSION] == 1
    assert header[H_ORDINAL] == 0
    assert not math.isnan(header[H_IDHASH])


async def test_window_ring_rolls_forward_and_ignores_old_days(services: Services) -> None:
    w = LAYOUT["page_views"].window
    assert w is not None
    await apply(services, "w", [Op(Opcode.WINDOW_ADD, w, TODAY - 40, 1)])
    done = await apply(services, "w", [
        Op(Opcode.WINDOW_ADD, w, TODAY - 2, 2), Op(Opcode.WINDOW_ADD, w, TODAY, 3),
        Op(Opcode.WINDOW_ADD, w, TODAY, 1), Op(Opcode.WINDOW_ADD, w, TODAY - 35, 7),
    ])  # fmt: skip
    assert window(done.profile, "page_views") == {TODAY - 2: 2, TODAY: 4}
    later = await apply(services, "w", [Op(Opcode.WINDOW_ADD, w, TODAY + 33, 1)])
    assert window(later.profile, "page_views") == {TODAY: 4, TODAY + 33: 1}
    much_later = await apply(services, "w", [Op(Opcode.WINDOW_ADD, w, TODAY + 100, 5)])
    assert window(much_later.profile, "page_views") == {TODAY + 100: 5}


async def test_gap_flag_guards_ops(services: Services) -> None:
    ls = LAYOUT["last_seen"].offset
    sessions = LAYOUT["sessions"].offset

    def visit(ts: float) -> list[Op]:
        return [
            Op(Opcode.CHECK_GAP, ls, ts, 1800),
            Op(Opcode.ADD, sessions, 1, 0, FLAG_WHEN_GAP),
            Op(Opcode.MAX, ls, ts),
        ]

    done = await apply(services, "g", visit(0), visit(1000), visit(2800), visit(4601))
    assert value(done.profile, "sessions") == 2


async def test_tags(services: Services) -> None:
    off, n = LAYOUT["tags"].offset, LAYOUT["tags"].slots
    adds = [Op(Opcode.TAG_ADD, off, n, float(code)) for code in range(1, n + 3)]
    done = await apply(services, "t", adds)  # two more than fit: the oldest go
    slots = list(f64(done.profile)[LAYOUT["tags"].index : LAYOUT["tags"].index + n])
    assert slots == [float(c) for c in range(3, n + 3)]
    done = await apply(
        services, "t", [Op(Opcode.TAG_REMOVE, off, n, 5.0), Op(Opcode.TAG_ADD, off, n, 4.0)]
    )
    slots = list(f64(done.profile)[LAYOUT["tags"].index : LAYOUT["tags"].index + n])
    assert [s for s in slots if not math.isnan(s)] == [3, 4, 6, 7, 8, 9, 10]
    done = await apply(services, "t", [Op(Opcode.TAG_CLEAR, off, n)])
    assert all(math.isnan(s) for s in f64(done.profile)[LAYOUT["tags"].index :][:n])


async def test_error_midway_writes_nothing(services: Services, raw_redis) -> None:
    off = LAYOUT["page_views"].offset
    await apply(services, "e", [Op(Opcode.ADD, off, 1)], ids=["first"])
    key = services.keys.visitor("s", "e")
    before = await raw_redis.get(key.profile)
    bad = pack_ops([Op(Opcode.ADD, off, 1)]) + struct.pack("<BBIdd", 99, 0, 0, 0.0, 0.0)
    with pytest.raises(StorageError, match="unknown opcode"):
        await services.profiles.apply("s", "e", LAYOUT.template, [("second", bad)], NOW)
    assert await raw_redis.get(key.profile) == before
    assert await raw_redis.zscore(key.event_ids, "second") is None


async def test_older_profile_is_padded_to_a_newer_layout(services: Services, raw_redis) -> None:
    grown = Schema.from_json({"attributes": [{"name": "points", "kind": "number"}]}).layout
    await apply(services, "p", [Op(Opcode.ADD, LAYOUT["orders"].offset, 1)])
    done = await services.profiles.apply(
        "s", "p", grown.template, [(None, pack_ops([Op(Opcode.SET, grown["points"].offset, 5)]))],
        NOW,
    )  # fmt: skip
    f = np.frombuffer(done.profile, np.float64)
    assert len(done.profile) == grown.size
    assert f[grown["orders"].index] == 1
    assert f[grown["points"].index] == 5


async def test_ordinals_are_dense_per_shard_and_deleted_with_the_visitor(
    services: Services, raw_redis
) -> None:
    vids = [f"o{i}" for i in range(40)]
    for vid in vids:
        await apply(services, vid, [Op(Opcode.ADD, LAYOUT["page_views"].offset, 1)])
    by_shard: dict[int, list[int]] = {}
    for vid in vids:
        blob = await services.profiles.get("s", vid)
        assert blob is not None
        by_shard.setdefault(services.keys.visitor("s", vid).shard, []).append(
            int(f64(blob)[H_ORDINAL])
        )
    for ordinals in by_shard.values():
        assert sorted(ordinals) == list(range(len(ordinals)))
    assert await services.profiles.count("s") == 40
    existed, _ = await services.visitors.erasure.erase("s", "o1", [], False, 1_790_000_000.0)
    assert existed
    assert await services.profiles.count("s") == 39
    assert await services.profiles.get("s", "o1") is None


async def test_pipelined_apply_equals_one_by_one(services: Services) -> None:
    ops = pack_ops([Op(Opcode.ADD, LAYOUT["page_views"].offset, 1)])
    batches = [(f"pl{i % 3}", [(f"e{i}", ops)]) for i in range(9)]
    done = await services.profiles.apply_pipelined("s", batches, LAYOUT.template, NOW)
    assert [a.applied for a in done] == [[True]] * 9
    for vid in ("pl0", "pl1", "pl2"):
        blob = await services.profiles.get("s", vid)
        assert blob is not None
        assert value(blob, "page_views") == 3
    again = await services.profiles.apply_pipelined("s", batches[:1], LAYOUT.template, NOW)
    assert again[0].applied == [False]  # the event id was seen
