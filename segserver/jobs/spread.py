"""`segserver recompute --workers N`: the shards of a site spread over N processes.

Shard s goes to worker s % N; each worker opens its own connections and runs the same
page-by-page recompute (jobs.recompute) over its shards at the same instant, so the
decoding and evaluation of N pages run on N cores while Redis serves them all. Each
worker reports its visitors done through a shared counter, for the progress bar.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from segserver import engine
from segserver.config import Settings
from segserver.jobs.recompute import RecomputeStats


def _worker(fields: dict[str, Any], url: str, site: str, now: float, shards: list[int],
            done: Synchronized[int], out: Synchronized[int]) -> None:  # fmt: skip
    from segserver.wiring import open_services

    settings = Settings.model_construct(**fields)  # validated by the parent already
    engine.warm(settings.kernel_cache_dir)

    def progress(visitors: int, _: int) -> None:
        done.value = visitors

    async def run() -> None:
        async with open_services(settings, url) as services:
            await services.scripts.load_all()
            stats = await services.recomputer.run(site, now, "recompute", progress,
                                                  shards=shards)  # fmt: skip
            out.value = stats.committed

    asyncio.run(run())


def recompute_spread(settings: Settings, url: str, site: str, now: float, workers: int,
                     progress: Callable[[int], None]) -> RecomputeStats:  # fmt: skip
    """Recompute every shard of `site` at `now` in `workers` processes; `progress` gets
    the visitors done so far, about every 0.2 s."""
    ctx = mp.get_context("spawn")
    done = [ctx.Value("q", 0) for _ in range(workers)]
    committed = [ctx.Value("q", 0) for _ in range(workers)]
    procs = [
        ctx.Process(target=_worker, args=(settings.model_dump(), url, site, now,
                    list(range(i, settings.shards, workers)), done[i], committed[i]))
        for i in range(workers)
    ]  # fmt: skip
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    while any(p.is_alive() for p in procs):
        progress(sum(d.value for d in done))
        time.sleep(0.2)
    for proc in procs:
        proc.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"recompute workers failed with exit codes {failed}")
    progress(sum(d.value for d in done))
    return RecomputeStats(sum(d.value for d in done), sum(c.value for c in committed),
                          time.perf_counter() - started)  # fmt: skip
