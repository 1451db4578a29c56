"""`segserver bench profile`: bytes per profile and decode cost, against msgpack.

Baselines measured in the same run: unpacking the same profile as a msgpack map
(one at a time, and in bulk), and raw MGET of the stored profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from typing import Any

import msgpack
import numpy as np

from segserver.bench.common import private_redis, row
from segserver.config import load_settings
from segserver.demo import DEMO_SCHEMA, visitor_events
from segserver.profile import codec
from segserver.wiring import build_services


def _per_call(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


async def _run(url: str, visitors: int) -> None:
    settings = load_settings(redis_url=url, key_prefix="pbench")
    services = build_services(settings)
    await services.scripts.load_all()
    site = await services.sites.create({"id": "pb", "name": "pb", "schema": DEMO_SCHEMA})
    ctx = await services.runtime.get(site.id)
    rng = random.Random(7)
    now = time.time()
    ids = [f"visitor-{i}" for i in range(visitors)]
    for vid in ids:
        await services.ingestor.ingest(
            ctx.data, visitor_events(rng, now)[:100], now, visitor_id=vid
        )
    client = services.clients.raw
    layout = ctx.data.schema.layout
    profile_keys = [services.keys.visitor(site.id, v).profile for v in ids]
    usage = [u for k in profile_keys[:2000] if (u := await client.memory_usage(k)) is not None]
    blobs: list[bytes] = [b for b in await client.mget(profile_keys) if b is not None]
    as_maps = []
    for blob in blobs:
        decoded = codec.to_json(blob, layout, ctx.data.vocab)
        flat = {k: v for k, v in decoded["attributes"].items() if not isinstance(v, list)}
        f = codec.features(blob, layout)
        flat.update(
            {
                a: float(f[layout[a].index])
                for a in flat
                if not isinstance(flat[a], int | float | bool)
            }
        )
        as_maps.append(
            msgpack.packb(
                {k: v for k, v in flat.items() if not (isinstance(v, float) and math.isnan(v))}
            )
        )
    await services.close()

    print(f"segserver bench profile: {visitors} demo visitors, layout {layout.size} bytes")
    print(row("MEMORY USAGE per profile key (mean)", float(np.mean(usage)), "bytes"))
    print(row("profile value length", float(len(blobs[0])), "bytes"))
    print(
        row(
            "msgpack map of the same attributes (mean, for scale)",
            float(np.mean([len(m) for m in as_maps])),
            "bytes",
        )
    )
    one = blobs[0]
    m = as_maps[0]
    t_msgpack = _per_call(lambda: msgpack.unpackb(m), 20000)
    t_view = _per_call(lambda: codec.features(one, layout), 20000)
    print(row("decode one: msgpack.unpackb of the map (baseline)", t_msgpack * 1e6, "µs"))
    print(row("decode one: float64 view of the layout", t_view * 1e6, "µs", t_msgpack * 1e6))
    t_bulk_msgpack = _per_call(lambda: [msgpack.unpackb(x) for x in as_maps], 3)
    t_bulk_view = _per_call(lambda: codec.features_block(blobs, layout), 3)
    n = len(blobs)
    print(row("bulk: msgpack maps decoded (baseline)", n / t_bulk_msgpack, "profiles/s"))
    print(
        row("bulk: layout block (N × F float64)", n / t_bulk_view, "profiles/s", n / t_bulk_msgpack)
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench profile")
    parser.add_argument("--visitors", type=int, default=20_000)
    args = parser.parse_args(argv)
    with private_redis() as server:
        asyncio.run(_run(server.url, args.visitors))
    return 0
