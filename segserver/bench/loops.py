"""`segserver bench loops`: how long the exact-expiry scheduler holds the event loop
while it works off due visitors, by batch size (500 was the batch before issue 14's
fix; `jobs.expiry.BATCH` is today's), measured with the server's own lag probe.

One run, one private Redis: the demo site with N synthetic visitors, every one of
them made due at once; the scheduler works them all off in one process while the
probe (a thread scheduling a callback on the loop every 2 ms) records how long each
callback waited: what a page view arriving meanwhile would wait before its handler
starts. Reported per batch size: visitors/s and that wait's p50, p99 and maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from segserver import engine
from segserver.bench.common import private_redis
from segserver.config import load_settings
from segserver.demo import ensure_demo_site, seed_profiles
from segserver.jobs.expiry import BATCH
from segserver.jobs.loop import LagProbe
from segserver.wiring import build_services


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(url: str, visitors: int, batches: list[int]) -> list[tuple[int, float, list[float]]]:
    settings = load_settings(redis_url=url, key_prefix="lbench")
    engine.warm(settings.kernel_cache_dir)
    services = build_services(settings)
    await services.scripts.load_all()
    site = (await ensure_demo_site(services)).id
    await seed_profiles(services, site, visitors)
    ids = [f"demo-1-{i}" for i in range(visitors)]
    out = []
    for batch in batches:
        now = time.time()
        keys = services.keys
        async with services.clients.raw.pipeline(transaction=False) as pipe:
            for vid in ids:  # every visitor due now
                pipe.zadd(keys.due(site, keys.visitor(site, vid).shard), {vid: now})
            await pipe.execute()
        services.expiry.batch = batch
        lags: list[float] = []
        probe = LagProbe(lags.append, every=0.002)
        probe.start(asyncio.get_running_loop())
        started = time.perf_counter()
        done = await services.expiry.run_once(now + 1)
        seconds = time.perf_counter() - started
        probe.stop()
        await asyncio.sleep(0.01)  # the last probes in flight
        out.append((batch, done / seconds, lags))
    await services.close()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench loops")
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[500, BATCH, 500, BATCH])
    args = parser.parse_args(argv)
    with private_redis() as redis_server:
        results = asyncio.run(_run(redis_server.url, args.visitors, args.batches))
    print(f"segserver bench loops: the expiry scheduler working off {args.visitors:,} due "
          "visitors; how long a callback arriving meanwhile waited for the event loop")  # fmt: skip
    for batch, rate, lags in results:
        print(f"  batch {batch:>4}: {rate:>8,.0f} visitors/s; wait p50 "
              f"{statistics.median(lags) * 1e3:6.2f} ms, p99 {_quantile(lags, 0.99) * 1e3:6.2f} "
              f"ms, max {max(lags) * 1e3:6.2f} ms ({len(lags)} probes)")  # fmt: skip
    return 0
