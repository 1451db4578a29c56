"""Measurements `segserver bench segments` makes of bulk work: the raw-MGET baseline,
the batch kernels per profile and segment, and bytes per visitor in Redis."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from segserver import engine
from segserver.bench.eval_sets import generated_segments
from segserver.catalogue.runtime import SiteContext
from segserver.engine import build_program
from segserver.profile import codec
from segserver.storage.bulk import BulkReader
from segserver.wiring import Services

PAGE = 10_000


async def shard_ids(services: Services, site: str) -> dict[int, list[str]]:
    """Every visitor id of the site by shard (HSCAN; not timed by the baseline)."""
    out: dict[int, list[str]] = {}
    for shard in range(services.keys.shards):
        client, ords = services.clients.raw, services.keys.shard_key(site, shard, "ords")
        cursor, ids = 0, []
        while True:
            cursor, found = await client.hscan(ords, cursor, count=PAGE)
            ids += [v.decode() for v in found.values()]
            if cursor == 0:
                break
        out[shard] = ids
    return out


async def raw_mget(services: Services, site: str,
                   ids: dict[int, list[str]]) -> tuple[int, float, list[bytes]]:  # fmt: skip
    """(profiles, seconds, a sample of profiles): `MGET` of every profile key in pages
    of `PAGE`, each page's values joined into one NumPy byte buffer."""
    reader = BulkReader(services.clients.raw, services.keys)
    n, sample = 0, list[bytes]()
    started = time.perf_counter()
    for shard, vids in ids.items():
        for lo in range(0, len(vids), PAGE):
            got = await reader.raw_mget(site, shard, vids[lo : lo + PAGE])
            present = [b for b in got if b is not None]
            np.frombuffer(b"".join(present), np.uint8)
            n += len(present)
            if len(sample) < 200_000:
                sample += present
    return n, time.perf_counter() - started, sample


def kernel_ns(ctx: SiteContext, blobs: list[bytes], now: float,
              segments: int = 20) -> dict[str, float]:  # fmt: skip
    """ns per profile·segment of the batch interpreter and of generated code for
    `segments` generated segments over the site's attributes, and ns per profile of
    decoding, on pages of `PAGE` profiles (as bulk work runs them)."""
    layout, vocab = ctx.data.schema.layout, ctx.data.vocab
    program = build_program(generated_segments(segments, 11), layout, vocab)
    pages = [blobs[lo : lo + PAGE] for lo in range(0, len(blobs), PAGE)]
    started = time.perf_counter()
    for page in pages:  # each block dropped, as bulk work does (its memory reused)
        codec.features_block(page, layout)
    result = {"decode": (time.perf_counter() - started) / len(blobs) * 1e9}
    blocks = [codec.features_block(page, layout) for page in pages]

    def run() -> float:
        started = time.perf_counter()
        for block in blocks:
            out = np.zeros((len(block), program.words), np.uint64)
            engine.evaluate_batch(program, block, now, out)
        return (time.perf_counter() - started) / (len(blobs) * segments) * 1e9

    result["interpreter"] = run()
    result["generated"] = float("nan")
    if engine.generate(program).result(timeout=600):
        result["generated"] = min(run() for _ in range(3))
    return result


async def bytes_per_visitor(services: Services, site: str, ids: list[str]) -> float:
    """Mean `MEMORY USAGE` of every per-visitor key of `ids` (missing keys count 0)."""
    client: Any = services.clients.raw
    total = 0
    for vid in ids:
        for key in services.keys.visitor(site, vid).all():
            total += await client.memory_usage(key, samples=0) or 0
    return total / max(len(ids), 1)
