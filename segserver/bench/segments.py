"""`segserver bench segments`: seeding, bulk recompute, exact preview and segment
analytics on N seeded visitors (default 1 M), in one run against a private
redis-server (or `--url`: an existing Redis or Redis Cluster, `redis+cluster://...`).

Baseline measured in the same run: raw `MGET` of the same profile keys, in pages of
10 000 (one per shard page, the ids listed beforehand), into one NumPy buffer per
page. Recompute profiles/s is reported against it (target >= 0.5x) for a run that
finds nothing to change and for one after an edit of one segment (with the number of
visitors it wrote). Analytics latencies are the server-side work (the catalogue
functions the admin routes call, without HTTP), medians of repeated runs. Expiry lag:
visitors made due one second ahead while the scheduler runs at the configured
interval; lag = commit observed - due instant.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from segserver import engine
from segserver.bench.bulk_parts import bytes_per_visitor, kernel_ns, raw_mget, shard_ids
from segserver.bench.common import private_redis, row
from segserver.config import load_settings
from segserver.demo import ensure_demo_site, seed_profiles
from segserver.jobs.loop import Loops
from segserver.jobs.spread import recompute_spread
from segserver.storage.analytics import AnalyticsStore
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
    ctx = await services.runtime.get(site)
    # compiled off the clock first: the runs below measure reading, not a JIT
    await asyncio.wrap_future(engine.generate(ctx.current_program()))
    ids = await shard_ids(services, site)
    n_raw, raw_s, blobs = await raw_mget(services, site, ids)
    raw_rate = n_raw / raw_s
    first = await services.recomputer.run(site, time.time(), "recompute")
    again = await services.recomputer.run(site, time.time(), "recompute")
    spread = await asyncio.to_thread(recompute_spread, settings, url, site, time.time(), 2,
                                     lambda _: None)  # fmt: skip
    seg = ctx.segments["high_value_customers"]
    edit = {"rule": {"all": [{"attr": "total_spent", "op": "gte", "value": 300},
                             {"attr": "orders", "op": "gte", "value": 3}]},
            "version": seg.version}  # fmt: skip
    job = (await services.edits.update_segment(site, seg.id, edit, time.time()))["recompute_job"]
    await services.recomputer.wait()
    edited = await services.jobs.get(site, job)
    kernels = await asyncio.to_thread(kernel_ns, ctx, blobs, time.time())
    sample_ids = [v for vs in ids.values() for v in vs[:20]][:200]
    per_visitor = await bytes_per_visitor(services, site, sample_ids)

    ctx = await services.runtime.get(site)
    store = AnalyticsStore(services.clients.raw, services.scripts, services.keys)
    analytics = services.analytics
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
    exact_first_ms, _ = await _median_ms(
        lambda: analytics.preview(ctx, PREVIEW_RULE, now, visitors, None), times=1
    )
    exact_ms, exact = await _median_ms(
        lambda: analytics.preview(ctx, PREVIEW_RULE, now, visitors, None), times=3
    )
    lags = await _expiry_lag(services, site, visitors, seed, probes,
                             settings.expiry_interval_seconds)  # fmt: skip
    await services.close()

    print(f"segserver bench segments: {visitors:,} seeded visitors, {settings.shards} shards, "
          f"{len(active)} active segments, {os.cpu_count()} cores")  # fmt: skip
    print(row("seeding (NumPy profiles + lua/seed_profiles.lua)", seeded.rate, "visitors/s"))
    print(row("raw MGET of every profile into NumPy (baseline)", raw_rate, "profiles/s"))
    print(row("bulk recompute, first (every visitor written)", first.visitors / first.seconds,
              "profiles/s", raw_rate))  # fmt: skip
    print(f"    ({first.committed:,} visitors committed)")
    print(row("bulk recompute again (nothing changes)", again.visitors / again.seconds,
              "profiles/s", raw_rate))  # fmt: skip
    print(f"    ({again.committed:,} visitors committed)")
    print(row("the same, --workers 2 (two processes, start-up included)",
              spread.visitors / spread.seconds, "profiles/s", raw_rate))  # fmt: skip
    print(row("recompute after an edit of one segment", int(edited["done"])
              / float(edited["seconds"]), "profiles/s", raw_rate))  # fmt: skip
    print(f"    ({int(edited['committed']):,} visitors committed: only those whose bits changed)")
    print(row("decode format-2 profiles into a feature block", kernels["decode"], "ns/profile"))
    print(row("batch interpreter, 20 segments", kernels["interpreter"], "ns/profile·segment"))
    print(row("generated code, 20 segments", kernels["generated"], "ns/profile·segment"))
    print(row("bytes per visitor (MEMORY USAGE of its keys, 200)", per_visitor, "B"))
    print(row("size of one segment (BITCOUNT over shards)", size_ms, "ms"))
    print(f"    (mobile_visitors: {size:,} members)")
    print(row(f"sizes of all {len(active)} active segments, one pipeline", sizes_ms, "ms"))
    print(row("overlap matrix of 10 segments", overlap_ms, "ms"))
    print(row("set expression a AND (b OR c) AND NOT d, count + sample", query_ms, "ms"))
    print(f"    (count {count:,})")
    print(row("preview of a draft rule, 5 000-visitor sample (default)", preview_ms, "ms"))
    print(row("preview of the same rule, exact, first (interpreter)", exact_first_ms, "ms"))
    print(row("preview of the same rule, exact, median of 3", exact_ms, "ms"))
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
    parser.add_argument(
        "--url", default="",
        help="an existing Redis or Redis Cluster (redis+cluster://host:port) to use",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.url:
        asyncio.run(_run(args.url, args.visitors, args.expiry_probes))
        return 0
    with private_redis() as redis_server:
        asyncio.run(_run(redis_server.url, args.visitors, args.expiry_probes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
