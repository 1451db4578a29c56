"""`segserver bench segments`: seeding, bulk recompute and segment analytics on N
seeded visitors (default 1 M), in one run against a private redis-server.

Baseline measured in the same run: the raw pipelined read of every profile (HSCAN of
each shard's ordinals + MGET per chunk, exactly the reads bulk recompute makes);
recompute profiles/s is reported against it (target ≥ 50 %). Analytics latencies are
the server-side work (the catalogue functions the admin routes call, without HTTP),
medians of repeated runs. Expiry lag: visitors made due one second ahead while the
scheduler runs at the configured interval; lag = commit observed − due instant.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from segserver import engine
from segserver.bench.common import private_redis, row
from segserver.catalogue.analytics import SegmentAnalytics
from segserver.config import load_settings
from segserver.demo import ensure_demo_site, seed_profiles
from segserver.jobs.loop import Loops
from segserver.storage.analytics import AnalyticsStore
from segserver.storage.jobs import ShardReader
from segserver.wiring import Services, build_services

PREVIEW_RULE = {"all": [
    {"attr": "country", "op": "in", "value": ["DE", "AT", "CH"]},
    {"attr": "total_spent", "op": "gt", "value": 100},
]}  # fmt: skip


async def _median_ms(fn: Callable[[], Awaitable[Any]], times: int = 7) -> tuple[float, Any]:
    took, last = [], None
    for _ in range(times):
        started = time.perf_counter()
        last = await fn()
        took.append(1000 * (time.perf_counter() - started))
    return statistics.median(took), last


async def _raw_read(services: Services, site: str, chunk: int) -> tuple[int, float]:
    reader = ShardReader(services.clients.raw, services.keys)
    started, n = time.perf_counter(), 0
    for shard in range(services.keys.shards):
        async for _, blobs in reader.chunks(site, shard, chunk):
            n += sum(1 for b in blobs if b is not None)
    return n, time.perf_counter() - started


async def _expiry_lag(services: Services, site: str, visitors: int, seed: int,
                      probes: int, interval: float) -> list[float]:  # fmt: skip
    """Lags (s) of `probes` visitors made due 1 s ahead, with the scheduler running."""
    rng = np.random.default_rng(3)
    ids = [f"demo-{seed}-{i}" for i in rng.choice(visitors, min(probes, visitors), replace=False)]
    client, keys = services.clients.raw, services.keys
    due_at = time.time() + 1.0
    async with client.pipeline(transaction=False) as pipe:
        for vid in ids:
            pipe.zadd(keys.due(site, keys.visitor(site, vid).shard), {vid: due_at})
        await pipe.execute()
    loops = Loops()
    loops.start("expiry", lambda: services.expiry.run_round(time.time), pause=interval)
    lags: dict[str, float] = {}
    deadline = time.time() + 30
    while len(lags) < len(ids) and time.time() < deadline:
        pending = [v for v in ids if v not in lags]
        async with client.pipeline(transaction=False) as pipe:
            for vid in pending:
                pipe.zscore(keys.due(site, keys.visitor(site, vid).shard), vid)
            scores = await pipe.execute()
        seen = time.time()
        for vid, score in zip(pending, scores, strict=True):
            if score is None or float(score) != due_at:
                lags[vid] = seen - due_at
        await asyncio.sleep(0.005)
    await loops.stop("expiry")
    return sorted(lags.values())


async def _run(url: str, visitors: int, probes: int) -> None:
    settings = load_settings(redis_url=url, key_prefix="sbench")
    engine.warm(settings.kernel_cache_dir)
    services = build_services(settings)
    await services.scripts.load_all()
    site = (await ensure_demo_site(services)).id
    seed = 1

    def progress(done: int) -> None:
        sys.stderr.write(f"\r  seeding {done:,}/{visitors:,}")
        sys.stderr.flush()

    seeded = await seed_profiles(services, site, visitors, seed=seed, progress=progress)
    sys.stderr.write("\n")
    print(f"  ({seeded.created:,} profiles created)", file=sys.stderr)
    n_raw, raw_s = await _raw_read(services, site, services.recomputer.chunk)
    stats = await services.recomputer.run(site, time.time(), "recompute")
    again = await services.recomputer.run(site, time.time(), "recompute")
    raw_rate, rec_rate = n_raw / raw_s, stats.visitors / stats.seconds

    ctx = await services.runtime.get(site)
    store = AnalyticsStore(services.clients.raw, services.scripts, services.keys)
    analytics = SegmentAnalytics(store, ShardReader(services.clients.raw, services.keys), 0)
    active = sorted((s for s in ctx.segments.values() if s.evaluated), key=lambda s: s.id)
    one = ctx.segments["mobile_visitors"]
    size_ms, size = await _median_ms(lambda: analytics.size(site, one))
    sizes_ms, _ = await _median_ms(lambda: store.sizes(site, [s.slot for s in active]))
    ten = [s.id for s in active[:10]]
    overlap_ms, _ = await _median_ms(lambda: analytics.overlap(ctx, ten))
    expr = {"and": ["mobile_visitors", {"or": ["returning_visitors", "recent_buyers"]},
                    {"not": "cart_abandoners"}]}  # fmt: skip
    query_ms, (count, _, _) = await _median_ms(lambda: analytics.query(ctx, expr))
    now = time.time()
    preview_ms, est = await _median_ms(
        lambda: analytics.preview(ctx, PREVIEW_RULE, now, 5_000, None)
    )
    preview10_ms, _ = await _median_ms(
        lambda: analytics.preview(ctx, PREVIEW_RULE, now, 10_000, None)
    )
    exact_ms, exact = await _median_ms(
        lambda: analytics.preview(ctx, PREVIEW_RULE, now, visitors, None), times=1
    )
    lags = await _expiry_lag(services, site, visitors, seed, probes,
                             settings.expiry_interval_seconds)  # fmt: skip
    await services.close()

    print(f"segserver bench segments: {visitors:,} seeded visitors, {settings.shards} shards, "
          f"{len(active)} active segments")  # fmt: skip
    print(row("seeding (NumPy profiles + lua/seed_profiles.lua)", seeded.rate, "visitors/s"))
    print(row("raw pipelined read of every profile (baseline)", raw_rate, "profiles/s"))
    print(row("bulk recompute (read + batch kernel + commit)", rec_rate, "profiles/s", raw_rate))
    print(row("bulk recompute again (nothing changes)", again.visitors / again.seconds,
              "profiles/s", raw_rate))  # fmt: skip
    print(row("size of one segment (BITCOUNT over shards)", size_ms, "ms"))
    print(f"    (mobile_visitors: {size:,} members)")
    print(row(f"sizes of all {len(active)} active segments, one pipeline", sizes_ms, "ms"))
    print(row("overlap matrix of 10 segments", overlap_ms, "ms"))
    print(row("set expression a AND (b OR c) AND NOT d, count + sample", query_ms, "ms"))
    print(f"    (count {count:,})")
    print(row("preview of a draft rule, 5 000-visitor sample (default)", preview_ms, "ms"))
    print(row("preview of a draft rule, 10 000-visitor sample", preview10_ms, "ms"))
    print(row("preview of the same rule, exact (every profile)", exact_ms, "ms"))
    print(f"    (estimate {est['count']:,} in {est['interval']} at 95 %; exact {exact['count']:,})")
    if lags:
        p = np.percentile(lags, [50, 99])
        print(row(f"expiry lag p50 ({len(lags)} visitors due, interval "
                  f"{settings.expiry_interval_seconds} s)", 1000 * p[0], "ms"))  # fmt: skip
        print(row("expiry lag p99", 1000 * p[1], "ms"))
        print(row("expiry lag max", 1000 * lags[-1], "ms"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench segments")
    parser.add_argument("--visitors", type=int, default=1_000_000)
    parser.add_argument("--expiry-probes", type=int, default=1000)
    args = parser.parse_args(argv)
    with private_redis() as redis_server:
        asyncio.run(_run(redis_server.url, args.visitors, args.expiry_probes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
