"""lua/apply_events.lua on a real redis-server: every opcode, windows, atomicity."""

from __future__ import annotations

import math
import struct

import msgpack
import numpy as np
import pytest

from segserver.errors import StorageError
from segserver.profile import codec
from segserver.profile.ops import FLAG_WHEN_GAP, Op, Opcode, pack_ops
from segserver.profile.schema import DAY_SECONDS, H_IDHASH, H_ORDINAL, H_VERSION, Schema
from segserver.wiring import Services

LAYOUT = Schema().layout
NOW = 1_790_000_000.0
TODAY = NOW // DAY_SECONDS


async def apply(services: Services, vid: str, *events: list[Op], ids: list[str] | None = None):
    batch = [((ids or [None] * len(events))[i], pack_ops(ops)) for i, ops in enumerate(events)]
    return await services.profiles.apply("s", vid, LAYOUT, batch, NOW)


def f64(blob: bytes) -> np.ndarray:
    return codec.features(blob, LAYOUT)


def value(blob: bytes, attr: str) -> float:
    return float(f64(blob)[LAYOUT[attr].index])


def window(blob: bytes, attr: str) -> dict[float, float]:
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
    ids_before = await raw_redis.get(key.event_ids)
    bad = pack_ops([Op(Opcode.ADD, off, 1)]) + struct.pack("<BBIdd", 99, 0, 0, 0.0, 0.0)
    with pytest.raises(StorageError, match="unknown opcode"):
        await services.profiles.apply("s", "e", LAYOUT, [("second", bad)], NOW)
    assert await raw_redis.get(key.profile) == before
    assert await raw_redis.get(key.event_ids) == ids_before


async def test_older_profile_is_padded_to_a_newer_layout(services: Services, raw_redis) -> None:
    grown = Schema.from_json({"attributes": [{"name": "points", "kind": "number"}]}).layout
    await apply(services, "p", [Op(Opcode.ADD, LAYOUT["orders"].offset, 1)])
    done = await services.profiles.apply(
        "s", "p", grown, [(None, pack_ops([Op(Opcode.SET, grown["points"].offset, 5)]))],
        NOW,
    )  # fmt: skip
    f = codec.features(done.profile, grown)
    assert len(f) == grown.size // 8
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
    done = await services.profiles.apply_pipelined("s", batches, LAYOUT, NOW)
    assert [a.applied for a in done] == [[True]] * 9
    for vid in ("pl0", "pl1", "pl2"):
        blob = await services.profiles.get("s", vid)
        assert blob is not None
        assert value(blob, "page_views") == 3
    again = await services.profiles.apply_pipelined("s", batches[:1], LAYOUT, NOW)
    assert again[0].applied == [False]  # the event id was seen


async def test_event_ids_cost_12_bytes_each_and_expire_with_the_window(
    services: Services, raw_redis
) -> None:
    window = services.profiles.dedup_window_seconds
    ops = pack_ops([Op(Opcode.ADD, LAYOUT["page_views"].offset, 1)])
    key = services.keys.visitor("s", "many").event_ids

    async def send(ids: list[str], now: float) -> list[bool]:
        done = await services.profiles.apply("s", "many", LAYOUT, [(i, ops) for i in ids], now)
        return done.applied

    ids = [f"event-{i:04d}-{'x' * 30}" for i in range(1000)]
    for lo in range(0, 1000, 100):
        assert await send(ids[lo : lo + 100], NOW + lo) == [True] * 100
    assert await raw_redis.strlen(key) == 4 + 12 * 1000
    assert await raw_redis.memory_usage(key) / 1000 <= 16
    assert 0 < await raw_redis.ttl(key) <= window + window // 8 + 1
    # retries inside the window are never counted twice, whatever the batch
    assert await send(ids[::7], NOW + window - 1) == [False] * len(ids[::7])
    profile = await services.profiles.get("s", "many")
    assert profile is not None and value(profile, "page_views") == 1000
    # past the window the old ids are dropped when the key is rewritten, and count again
    later = NOW + 900 + window + window // 8 + 1
    assert await send(["fresh", ids[999]], later) == [True, True]
    assert await raw_redis.strlen(key) == 4 + 12 * 2


async def test_raw_event_ids_and_the_sorted_set_of_the_format_before(
    services: Services, raw_redis
) -> None:
    ops = pack_ops([Op(Opcode.ADD, LAYOUT["page_views"].offset, 1)])
    vk = services.keys.visitor("s", "old-ids")
    # the format before: a sorted set of raw ids scored by the second they were seen
    await raw_redis.zadd(vk.event_ids, {"seen-long-ago": NOW - 90_000, "seen-lately": NOW - 10})
    keys = [vk.profile, vk.event_ids, vk.shard_seq, vk.shard_ordinals, vk.bits, vk.caps]
    args = [repr(NOW), 86400, 0, LAYOUT.window_slots, "old-ids", 1]
    # a raw id (not 8 bytes) is hashed by the script as ProfileStore hashes it
    raw = await services.scripts.call("apply_events", keys, [*args, "seen-lately", ops, "new", ops])
    assert raw[3:] == [0, 1]
    done = await services.profiles.apply(
        "s", "old-ids", LAYOUT, [("new", ops), ("seen-long-ago", ops), ("seen-lately", ops)], NOW
    )
    assert done.applied == [False, True, False]
    assert await raw_redis.type(vk.event_ids) == b"string"
    assert await raw_redis.strlen(vk.event_ids) == 4 + 12 * 3  # seen-long-ago was expired


async def test_profile_ttl_is_set_once_a_day(services: Services, raw_redis) -> None:
    ttl = services.profiles.profile_ttl_seconds
    ops = pack_ops([Op(Opcode.ADD, LAYOUT["page_views"].offset, 1)])
    key = services.keys.visitor("s", "ttl").profile
    await services.profiles.apply("s", "ttl", LAYOUT, [(None, ops)], NOW)
    assert ttl - 5 <= await raw_redis.ttl(key) <= ttl
    await raw_redis.expire(key, 1000)
    await services.profiles.apply("s", "ttl", LAYOUT, [(None, ops)], NOW + 60)
    assert 0 < await raw_redis.ttl(key) <= 1000  # the same day: kept
    await services.profiles.apply("s", "ttl", LAYOUT, [(None, ops)], NOW + DAY_SECONDS)
    assert ttl - 5 <= await raw_redis.ttl(key) <= ttl  # the next day: set again


async def test_window_amounts_round_to_float32_and_pick_their_form(services: Services) -> None:
    w = LAYOUT["total_spent"].window
    assert w is not None
    done = await apply(services, "f", [
        Op(Opcode.WINDOW_ADD, w, TODAY, 12.34), Op(Opcode.WINDOW_ADD, w, TODAY, 0.3),
        Op(Opcode.WINDOW_ADD, w, TODAY - 3, 1), Op(Opcode.WINDOW_ADD, w, TODAY - 3, -1),
    ])  # fmt: skip
    expected = np.float32(np.float32(12.34) + 0.3)  # as the float32 ring added
    assert window(done.profile, "total_spent") == {TODAY: float(expected)}
    daily = [Op(Opcode.WINDOW_ADD, w, TODAY + d, 2) for d in range(1, 30)]
    done = await apply(services, "f", daily)
    days = window(done.profile, "total_spent")
    assert days == {TODAY + d: 2.0 for d in range(1, 30)} | {TODAY: float(expected)}


async def test_same_day_counts_patch_the_window_in_place_up_to_fixints(services: Services) -> None:
    w = LAYOUT["page_views"].window
    assert w is not None
    for _ in range(130):  # one event a call: the in-place path, then past 127 the general one
        done = await apply(services, "sp", [Op(Opcode.WINDOW_ADD, w, TODAY, 1)])
    assert window(done.profile, "page_views") == {TODAY: 130}
    daily = [Op(Opcode.WINDOW_ADD, w, TODAY - d, 1) for d in range(20, 0, -1)]
    done = await apply(services, "dn", daily, [Op(Opcode.WINDOW_ADD, w, TODAY, 1)])
    stored = msgpack.unpackb(done.profile[24:], strict_map_key=False, raw=True)
    assert msgpack.unpackb(stored[w // 8])[0] == -TODAY  # the dense form now
    for _ in range(3):
        done = await apply(services, "dn", [Op(Opcode.WINDOW_ADD, w, TODAY, 40)])
    assert window(done.profile, "page_views") == {TODAY - d: 1 for d in range(1, 21)} | {TODAY: 121}
    done = await apply(services, "dn", [Op(Opcode.WINDOW_ADD, w, TODAY, 7)])
    assert window(done.profile, "page_views")[TODAY] == 128
