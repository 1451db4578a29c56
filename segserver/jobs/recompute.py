"""Bulk recompute: every visitor of a site, shard by shard, chunk by chunk.

Profiles are read with one MGET per chunk, evaluated by the batch kernel in a worker
thread (never on the event loop), and committed with one atomic Lua call per chunk,
which flips only the bits that changed and records entries and exits. Lookups stay
exact meanwhile (they evaluate at request time); an event committed during the run
wins over the recompute's older evaluation (the version guard).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from segserver.catalogue.runtime import Runtime, SiteContext
from segserver.engine import evaluate_batch, next_change
from segserver.errors import SegserverError
from segserver.membership import bits_to_values, commit
from segserver.profile import codec
from segserver.profile.schema import H_ORDINAL, H_VERSION
from segserver.storage.jobs import JobStore, ShardReader
from segserver.storage.keys import Keys
from segserver.storage.membership import Evaluated, MembershipStore

log = logging.getLogger("segserver.recompute")
Progress = Callable[[int, int], None]


@dataclass
class RecomputeStats:
    visitors: int = 0
    committed: int = 0
    seconds: float = 0.0


def _evaluate_chunk(
    ctx: SiteContext, ids: list[str], blobs: list[bytes], now: float
) -> list[Evaluated]:
    """CPU work of one chunk (runs in a worker thread)."""
    program = ctx.current_program()
    layout = ctx.data.schema.layout
    block = codec.features_block(blobs, layout)
    words = np.zeros((len(blobs), max(program.words, 1)), np.uint64)
    evaluate_batch(program, block, now, words)
    count = len(program.segment_ids)
    items = []
    for i, vid in enumerate(ids):
        row = block[i]
        ordinal = float(row[H_ORDINAL])
        if math.isnan(ordinal):
            continue
        items.append(Evaluated(
            vid, int(ordinal), float(row[H_VERSION]), now, bits_to_values(words[i], count),
            next_change(program, row, now),
        ))  # fmt: skip
    return items


class Recomputer:
    def __init__(self, runtime: Runtime, reader: ShardReader, membership: MembershipStore,
                 keys: Keys, jobs: JobStore, chunk: int = 1000) -> None:  # fmt: skip
        self.runtime = runtime
        self.reader = reader
        self.membership = membership
        self.keys = keys
        self.jobs = jobs
        self.chunk = chunk
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, site_id: str, now: float, cause: str = "recompute",
                  progress: Progress | None = None, total: int = 0) -> RecomputeStats:  # fmt: skip
        """Recompute every visitor of the site with its current program, at `now`."""
        self.runtime.forget(site_id)
        ctx = await self.runtime.get(site_id)
        ctx.current_program()
        stats = RecomputeStats()
        started = time.perf_counter()
        for shard in range(self.keys.shards):
            async for ids, blobs in self.reader.chunks(site_id, shard, self.chunk):
                present = [(v, b) for v, b in zip(ids, blobs, strict=True) if b is not None]
                if not present:
                    continue
                vids, found = [v for v, _ in present], [b for _, b in present]
                items = await asyncio.to_thread(_evaluate_chunk, ctx, vids, found, now)
                stats.committed += await commit(self.membership, self.keys, ctx, items, cause,
                                                now)  # fmt: skip
                stats.visitors += len(found)
                if progress is not None:
                    progress(stats.visitors, total)
        stats.seconds = time.perf_counter() - started
        return stats

    async def start(self, site_id: str, now: float, cause: str, total: int) -> str:
        """Run a recompute as a background job of this process; returns the job id."""
        job = f"{int(now)}-{secrets.token_hex(4)}"
        await self.jobs.save(site_id, job, {
            "id": job, "kind": "recompute", "cause": cause, "state": "running", "done": 0,
            "total": total, "started_at": now, "finished_at": "", "error": "",
        }, new=True)  # fmt: skip
        last = [0.0]

        def progress(done: int, _: int) -> None:
            if time.monotonic() - last[0] > 0.5:
                last[0] = time.monotonic()
                task = asyncio.ensure_future(self.jobs.save(site_id, job, {"done": done}))
                task.add_done_callback(lambda t: t.exception())

        async def work() -> None:
            try:
                stats = await self.run(site_id, now, cause, progress, total)
                await self.jobs.save(site_id, job, {
                    "state": "done", "done": stats.visitors, "total": max(total, stats.visitors),
                    "finished_at": time.time(), "seconds": round(stats.seconds, 3),
                })  # fmt: skip
            except SegserverError as exc:
                log.error("recompute %s of site %s failed: %s", job, site_id, exc.message)
                await self.jobs.save(site_id, job, {"state": "failed", "error": exc.message,
                                                    "finished_at": time.time()})  # fmt: skip

        task = asyncio.create_task(work())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return job

    async def cancel(self) -> None:
        """Stop this process' running jobs (shutdown); they are marked failed."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def wait(self) -> None:
        """Let every running job of this process finish (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
