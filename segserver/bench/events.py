"""`segserver bench events`: event ingestion through HTTP against raw EVALSHA.

One run, same machine, same Redis:
  1. raw: the apply_events script called with pipelined EVALSHA from one client
     process (no HTTP, no validation) — what Redis itself sustains for one page
     view per call;
  2. http: `POST /v1/events` with one page view per request from N concurrent
     clients in this process, against `segserver serve` in a subprocess.
Both apply exactly the same ops to the same number of distinct visitors.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import orjson

from segserver.bench.common import private_redis, row, server_process
from segserver.config import load_settings
from segserver.profile.events import EventCatalog, Limits, plan_ops, validate_event
from segserver.profile.schema import Schema
from segserver.wiring import build_services

TOKEN = "bench-admin-token-0123456789abcdefghij"


async def _raw(url: str, seconds: float, visitors: int, pipeline: int) -> float:
    """The apply script alone: pipelined calls through the storage layer, no HTTP."""
    settings = load_settings(redis_url=url, key_prefix="rawbench", shards=16)
    services = build_services(settings)
    await services.scripts.load_all()
    schema = Schema()
    catalog = EventCatalog(schema)
    now = time.time()
    ev = validate_event({"visitor_id": "x", "type": "page_view"}, "e", catalog, Limits(), now)
    batch = [(None, plan_ops(ev, catalog, Limits()).pack(lambda a, v: 1))]
    template = schema.layout.template
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        chunk = [(f"v{(done + n) % visitors}", batch) for n in range(pipeline)]
        await services.profiles.apply_pipelined("raw", chunk, template, now)
        done += pipeline
    elapsed = time.perf_counter() - start
    await services.close()
    return done / elapsed


async def _http(base: str, seconds: float, visitors: int, concurrency: int) -> tuple[float, int]:
    async with aiohttp.ClientSession() as admin:
        resp = await admin.post(
            f"{base}/v1/admin/sites",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"id": "bench", "name": "bench"},
        )
        site_key = (await resp.json())["site_key"]
    headers = {"X-Segserver-Key": site_key, "Content-Type": "application/json"}
    counter = 0
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal counter, errors
        while time.perf_counter() < deadline:
            n = counter
            counter += 1
            body = orjson.dumps(
                {"events": [{"visitor_id": f"v{n % visitors}", "type": "page_view"}]}
            )
            async with session.post(f"{base}/v1/events", data=body, headers=headers) as r:
                await r.read()
                if r.status != 202:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return counter / elapsed, errors


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench events")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--pipeline", type=int, default=100)
    args = parser.parse_args(argv)
    with private_redis() as redis_server:
        raw = asyncio.run(_raw(redis_server.url, args.seconds, args.visitors, args.pipeline))
        with server_process(redis_server.url, TOKEN) as base:
            http, errors = asyncio.run(_http(base, args.seconds, args.visitors, args.concurrency))
    print(
        f"segserver bench events: {args.seconds:.0f} s each, {args.visitors} visitors, "
        "one page_view per call"
    )
    print(
        row(f"raw EVALSHA apply_events, pipelines of {args.pipeline} (baseline)", raw, "events/s")
    )
    print(
        row(f"POST /v1/events, 1 event/request, {args.concurrency} clients", http, "events/s", raw)
    )
    if errors:
        print(f"  ({errors} HTTP errors)")
    return 0
