"""Exact count of a draft rule over every profile of a site, at the speed of reading.

Every shard is read in pages of `chunk` visitors (storage.bulk: one HSCAN page, one
MGET), the next page while the current one is decoded and evaluated in a worker
thread (the decoder and the kernels release the GIL). The program holds only the draft
and the segments it refers to, so a large catalogue costs nothing here; it is handed
to `engine.generate` and runs as generated code once compiled (the interpreter serves
meanwhile: a preview never waits for a JIT). Numbers: docs/scale.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from segserver import engine
from segserver.engine import Program
from segserver.profile import codec
from segserver.profile.schema import Layout
from segserver.storage.bulk import BulkReader, Page


def _matches(program: Program, bit: int, layout: Layout, page: Page,
             now: float) -> tuple[int, int, list[str]]:  # fmt: skip
    """(hits, profiles, ids of the first hits) of one page."""
    rows = [i for i, blob in enumerate(page.profiles) if blob is not None]
    if not rows:
        return 0, 0, []
    blobs: list[bytes] = [page.profiles[i] for i in rows]  # type: ignore[misc]
    block = codec.features_block(blobs, layout)
    words = np.zeros((len(rows), program.words), np.uint64)
    engine.evaluate_batch(program, block, now, words)
    hit = (words[:, bit >> 6] >> np.uint64(bit & 63)) & np.uint64(1)
    found = np.flatnonzero(hit)
    return len(found), len(rows), [page.ids[rows[i]] for i in found[:32].tolist()]


async def count_exact(reader: BulkReader, site: str, shards: Sequence[int], program: Program,
                      bit: int, layout: Layout, now: float, chunk: int,
                      sample: int) -> tuple[int, int, list[str]]:  # fmt: skip
    """(visitors matching bit `bit` of `program` at `now`, profiles read, up to
    `sample` matching ids spread over shards)."""
    engine.generate(program)
    queue: asyncio.Queue[Page | None] = asyncio.Queue(maxsize=2)

    async def read_all() -> None:
        for shard in shards:
            async for page in reader.pages(site, shard, chunk):
                await queue.put(page)
        await queue.put(None)

    producer = asyncio.create_task(read_all())
    hits = n = 0
    ids: list[list[str]] = []
    pending: list[asyncio.Future[Any]] = []
    try:
        while (page := await queue.get()) is not None:
            # evaluate while the next page is read; at most two pages in flight
            pending.append(asyncio.ensure_future(
                asyncio.to_thread(_matches, program, bit, layout, page, now)
            ))  # fmt: skip
            if len(pending) > 1:
                h, m, some = await pending.pop(0)
                hits, n = hits + h, n + m
                ids.append(some)
        for job in pending:
            h, m, some = await job
            hits, n = hits + h, n + m
            ids.append(some)
        await producer
    finally:
        producer.cancel()
        await asyncio.gather(producer, *pending, return_exceptions=True)
    spread = [c[i] for i in range(max(map(len, ids), default=0)) for c in ids if i < len(c)]
    return hits, n, spread[:sample]
