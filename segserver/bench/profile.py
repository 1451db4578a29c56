"""`segserver bench profile`: bytes per visitor in Redis and decode costs, with baselines.

One run, one private Redis, the demo site's schema:
  * bytes: `MEMORY USAGE` of the profile keys of demo visitors — event histories from
    `segserver.demo.visitor_events` through the real event path, and profiles from the
    demo seeding — as p50 / p90 / max, a worst case (every attribute set to a float64
    that fits nothing smaller, every tag slot, six full 35-day windows of fractions),
    a heavy visitor (every attribute set, active on every day of every window), and
    the same profiles in format 1 (the feature vector itself) as the baseline;
    the event-id key of a visitor with 1,000 remembered ids against the sorted set of
    the format before;
  * decode: `codec.features` (one profile, every page view) against the format-1 view
    and `msgpack.unpackb` of the same attributes as a map; `codec.features_block`
    (bulk recompute) alone and after a raw MGET, against format 1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from segserver.bench.common import private_redis, row
from segserver.config import load_settings
from segserver.demo import DEMO_SCHEMA, seed_profiles, visitor_events
from segserver.profile import codec, packed
from segserver.profile.schema import WINDOW_DAYS, Kind, Layout
from segserver.storage.client import Client
from segserver.wiring import build_services


def _per_call(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call: the best of 5 rounds of `n` calls (the machine is shared)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def _heavy(layout: Layout) -> np.ndarray:
    """A visitor who has everything, realistically: every attribute set (timestamps and
    money with fractions, counts and codes whole), active on all 35 days of every window."""
    f = np.array(layout.features_template)
    f[1], f[2], f[3] = 5000.0, 123_456.0, 4_000_000_000.0
    money = {"cart_value", "total_spent", "refunded_total"}
    for attr in layout.attributes.values():
        if attr.kind is Kind.TIMESTAMP:
            value = 1_790_000_000.123456 + attr.index
        elif attr.kind is Kind.DATE:
            value = 7000.0 * 86400
        elif attr.name in money:
            value = 1234.56
        else:
            value = 7.0
        f[attr.index : attr.index + attr.slots] = value + np.arange(attr.slots)
    f32 = f.view(np.float32)
    for attr in layout.attributes.values():
        if attr.window_index is not None:
            wi = attr.window_index
            f32[wi] = 20500
            amounts = np.float32(19.99) if attr.name in money else np.arange(1, 36) % 12 + 1
            f32[wi + 1 : wi + 1 + WINDOW_DAYS] = amounts
    return f


def _worst(layout: Layout) -> np.ndarray:
    """Every slot set to a value only float64 holds, every window day a fraction."""
    f = np.array(layout.features_template)
    f[1], f[2], f[3] = 123456.0, 9_999_999.0, 4_000_000_000.0
    kinds = layout.slot_kinds
    for slot in np.flatnonzero(kinds == packed.SLOT_SCALAR):
        f[slot] = 1_790_000_000.123456 + slot
    f32 = f.view(np.float32)
    for slot in np.flatnonzero(kinds == packed.SLOT_WINDOW):
        f32[2 * slot] = 20500
        f32[2 * slot + 1 : 2 * slot + 1 + WINDOW_DAYS] = np.arange(WINDOW_DAYS) + 0.3
    return f


async def _usage(client: Client, keys: list[str]) -> np.ndarray:
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        return np.array([u for u in await pipe.execute() if u is not None], np.float64)


def _dist(values: np.ndarray) -> str:
    p50, p90 = np.percentile(values, [50, 90])
    return f"p50 {p50:,.0f}  p90 {p90:,.0f}  max {values.max():,.0f}"


async def _run(url: str, visitors: int, seeded: int) -> None:
    settings = load_settings(redis_url=url, key_prefix="pbench")
    services = build_services(settings)
    await services.scripts.load_all()
    site = await services.sites.create({"id": "pb", "name": "pb", "schema": DEMO_SCHEMA})
    ctx = await services.runtime.get(site.id)
    layout = ctx.data.schema.layout
    client = services.clients.raw
    rng = random.Random(7)
    now = time.time()
    ids = [f"visitor-{i}" for i in range(visitors)]
    for vid in ids:
        await services.ingestor.ingest(
            ctx.data, visitor_events(rng, now)[:100], now, visitor_id=vid
        )
    await seed_profiles(services, site.id, seeded, seed=3)
    keys_of = [services.keys.visitor(site.id, v).profile for v in ids]
    found = [(k, b) for k, b in zip(keys_of, await client.mget(keys_of), strict=True) if b]
    event_keys, blobs = [k for k, _ in found], [b for _, b in found]
    seed_keys = [services.keys.visitor(site.id, f"demo-3-{i}").profile for i in range(seeded)]
    seeded_blobs: list[bytes] = list(await client.mget(seed_keys))

    # the same profiles in format 1 (the baseline) and a worst case, under keys as long
    old_keys = [k.replace(":p:", ":q:") for k in event_keys]
    old_blobs = [codec.features(b, layout).tobytes() for b in blobs]
    async with client.pipeline(transaction=False) as pipe:
        for key, blob in zip(old_keys, old_blobs, strict=True):
            pipe.set(key, blob)
        worst_key, heavy_key = (event_keys[0].replace(":p:", x) for x in (":w:", ":h:"))
        pipe.set(worst_key, packed.encode(_worst(layout), layout))
        pipe.set(heavy_key, packed.encode(_heavy(layout), layout))
        await pipe.execute()
    new_usage, seed_usage = await _usage(client, event_keys), await _usage(client, seed_keys)
    old_usage, worst = await _usage(client, old_keys), await _usage(client, [worst_key, heavy_key])

    # event ids: 1,000 remembered ones, against the sorted set of the format before
    ops = b""
    for lo in range(0, 1000, 100):
        batch = [(f"{lo + i:04d}-{'e' * 32}", ops) for i in range(100)]
        await services.profiles.apply(site.id, "ids", layout, batch, now + lo)
    ids_key = services.keys.visitor(site.id, "ids").event_ids
    zset_key = ids_key + ":zset"
    await client.zadd(zset_key, {f"{i:04d}-{'e' * 32}": now + i for i in range(1000)})
    ids_usage, zset_usage = await _usage(client, [ids_key, zset_key])

    # decoding, against format 1 and a msgpack map of the same attributes
    as_maps = []
    for blob in blobs[:2000]:
        f = codec.features(blob, layout)
        flat = {a.name: float(f[a.index]) for a in layout.attributes.values()}
        as_maps.append(msgpack.packb({k: v for k, v in flat.items() if v == v}))
    one, one_old, one_map = blobs[len(blobs) // 2], old_blobs[len(blobs) // 2], as_maps[0]
    t_new = _per_call(lambda: codec.features(one, layout), 20000)
    t_old = _per_call(lambda: codec.features(one_old, layout), 20000)
    t_map = _per_call(lambda: msgpack.unpackb(one_map), 20000)
    every = blobs + seeded_blobs
    every_old = [codec.features(b, layout).tobytes() for b in every]
    n = len(every)
    b_new = _per_call(lambda: codec.features_block(every, layout), 3)
    b_old = _per_call(lambda: codec.features_block(every_old, layout), 3)
    all_keys, all_old = event_keys + seed_keys, old_keys + [k.replace(":p:", ":q:") for k in
                                                           seed_keys]  # fmt: skip
    async with client.pipeline(transaction=False) as pipe:
        for key, blob in zip(all_old[len(old_keys) :], every_old[len(blobs) :], strict=True):
            pipe.set(key, blob)
        await pipe.execute()

    async def read(keys: list[str]) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for lo in range(0, len(keys), 1000):
                got = await client.mget(keys[lo : lo + 1000])
                codec.features_block(got, layout)
            best = min(best, time.perf_counter() - start)
        return len(keys) / best

    r_new, r_old = await read(all_keys), await read(all_old)
    await services.close()

    print(
        f"segserver bench profile: demo schema ({layout.size} bytes of features), "
        f"{len(blobs)} visitors from event histories, {len(seeded_blobs)} seeded"
    )
    print("MEMORY USAGE per profile key, bytes:")
    print(f"  format 1, the event histories (baseline)         {_dist(old_usage)}")
    print(f"  format 2, the event histories                    {_dist(new_usage)}")
    print(f"  format 2, seeded demo visitors                   {_dist(seed_usage)}")
    print(f"  format 2, a heavy visitor (everything, 35 days)  {worst[1]:,.0f}")
    print(f"  format 2, worst case (every slot, full windows)  {worst[0]:,.0f}")
    lengths = np.array([len(b) for b in blobs], np.float64)
    print(f"  (format-2 value lengths, event histories:        {_dist(lengths)})")
    print("event ids, a visitor with 1,000 remembered:")
    print(row("sorted set of raw ids, the format before (baseline)", zset_usage / 1000, "B/id"))
    print(row("12-byte records in one string", ids_usage / 1000, "B/id", zset_usage / 1000))
    print("decode one profile (codec.features, every page view):")
    print(row("format 1: float64 view (baseline)", t_old * 1e6, "µs"))
    print(row("format 2: Numba kernel into the vector", t_new * 1e6, "µs", t_old * 1e6))
    print(row("msgpack.unpackb of the attributes as a map", t_map * 1e6, "µs", t_old * 1e6))
    print(f"bulk (codec.features_block, N × {layout.size // 8} float64, {n} profiles):")
    print(row("format 1: join + view (baseline)", n / b_old, "profiles/s"))
    print(row("format 2: Numba kernel", n / b_new, "profiles/s", n / b_old))
    print(row("MGET + features_block, format 1 (baseline)", r_old, "profiles/s"))
    print(row("MGET + features_block, format 2", r_new, "profiles/s", r_old))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench profile")
    parser.add_argument("--visitors", type=int, default=5_000, help="event histories")
    parser.add_argument("--seeded", type=int, default=50_000, help="seeded demo visitors")
    args = parser.parse_args(argv)
    with private_redis() as server:
        asyncio.run(_run(server.url, args.visitors, args.seeded))
    return 0
