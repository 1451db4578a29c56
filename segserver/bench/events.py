"""`segserver bench events`: event ingestion through HTTP against raw EVALSHA.

One run, same machine, same Redis:
  1. raw: the apply_events script called with pipelined EVALSHA from one client
     process (no HTTP, no validation) — what Redis itself sustains for one page
     view per call;
  2. http: `POST /v1/events` with one page view per request (the SDK's properties,
     a fresh event id each) against `segserver serve` in a subprocess: driven by
     `wrk` pinned to core 1 with the server pinned to core 0 (as `segserver bench
     http` does), or, without wrk, by N concurrent clients in this process (which
     then share the cores with the server: an underestimate, said in the output).
Both apply exactly the same ops to the same number of distinct visitors.

Redis' own time comes from `INFO commandstats` (reset before each part): in the raw
part every EVALSHA is one apply_events call, so `usec_per_call` is the script's cost
per page view; in the http part EVALSHA also counts the other scripts of a request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from segserver.bench.common import private_redis, row, server_process
from segserver.bench.http import run_wrk
from segserver.config import load_settings
from segserver.profile.events import EventCatalog, Limits, plan_ops, validate_event
from segserver.profile.schema import Schema
from segserver.storage.client import Client, create_clients
from segserver.storage.stats import CommandStats
from segserver.wiring import build_services

TOKEN = "bench-admin-token-0123456789abcdefghij"
# what the JS SDK sends with every page view (sdk_js/src/page.js), UTM parameters aside
PAGE_VIEW = {"url": "https://shop.example/p/42", "referrer": "https://shop.example/",
             "title": "Product 42", "device": "mobile", "language": "de"}  # fmt: skip


async def _evalsha(client: Client) -> tuple[int, float]:
    """(calls, µs) of EVALSHA since the last CONFIG RESETSTAT (INFO commandstats)."""
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), float(stats.get("usec", 0))


async def _raw(
    url: str, seconds: float, visitors: int, pipeline: int, sdk: bool
) -> tuple[float, float]:
    """The apply script alone: pipelined calls through the storage layer, no HTTP; page
    views as the SDK sends them (`sdk`: properties and an event id) or bare. Returns
    (calls/s, Redis µs per call)."""
    settings = load_settings(redis_url=url, key_prefix=f"raw{int(sdk)}", shards=16)
    services = build_services(settings)
    await services.scripts.load_all()
    schema = Schema()
    catalog = EventCatalog(schema)
    now = time.time()
    raw = {"visitor_id": "x", "type": "page_view", "properties": PAGE_VIEW if sdk else {}}
    ev = validate_event(raw, "e", catalog, Limits(), now)
    ops = plan_ops(ev, catalog, Limits()).pack(lambda a, v: 1)
    layout = schema.layout
    done = 0
    await services.clients.raw.config_resetstat()
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        chunk = [
            (f"v{(done + n) % visitors}", [(f"pv-{done + n}" if sdk else None, ops)])
            for n in range(pipeline)
        ]
        await services.profiles.apply_pipelined("raw", chunk, layout, now)
        done += pipeline
    elapsed = time.perf_counter() - start
    calls, usec = await _evalsha(services.clients.raw)
    await services.close()
    return done / elapsed, usec / max(calls, 1)


async def _http(
    base: str, url: str, seconds: float, visitors: int, concurrency: int
) -> tuple[float, int, float, float]:
    """(events/s, HTTP errors, EVALSHA calls per event, EVALSHA µs per event)."""
    clients = create_clients(load_settings(redis_url=url))
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
            event = {"visitor_id": f"v{n % visitors}", "type": "page_view", "event_id": f"e{n}",
                     "properties": PAGE_VIEW}  # fmt: skip
            body = orjson.dumps({"events": [event]})
            async with session.post(f"{base}/v1/events", data=body, headers=headers) as r:
                await r.read()
                if r.status != 202:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    await clients.raw.config_resetstat()
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    calls, usec = await _evalsha(clients.raw)
    await clients.close()
    return counter / elapsed, errors, calls / max(counter, 1), usec / max(counter, 1)


def _site_key(base: str, visitors: int) -> str:
    """The bench site's key, its `visitors` created by one page view each first (the
    raw part calls most visitors many times: the HTTP part must not measure only the
    creation of new visitors)."""

    async def make() -> str:
        async with aiohttp.ClientSession() as admin:
            resp = await admin.post(f"{base}/v1/admin/sites", json={"id": "bench"},
                                    headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            key = str((await resp.json())["site_key"])
            for first in range(0, visitors, 100):
                events = [{"visitor_id": f"v{i}", "type": "page_view", "event_id": f"s{i}",
                           "properties": PAGE_VIEW}
                          for i in range(first, min(first + 100, visitors))]  # fmt: skip
                resp = await admin.post(f"{base}/v1/events", json={"events": events},
                                        headers={"X-Segserver-Key": key})  # fmt: skip
                resp.raise_for_status()
            return key

    return asyncio.run(make())


def _wrk_events(base: str, url: str, seconds: float, visitors: int, connections: int
                ) -> tuple[float, int, float, float, str]:  # fmt: skip
    """(events/s, HTTP errors, EVALSHA calls per event, EVALSHA µs per event, what else
    was measured) with wrk."""
    key = _site_key(base, visitors)
    props = json.dumps(PAGE_VIEW).replace("'", "\\'")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "events.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.headers["X-Segserver-Key"] = "{key}"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            "local n = 0\n"
            "request = function()\n  n = n + 1\n"
            f"  return wrk.format(nil, '/v1/events', nil, '[{{\"visitor_id\":\"v' .. "
            f'(n % {visitors}) .. \'","type":"page_view","event_id":"e\' .. n .. '
            f'\'","properties":{props}}}]\')\nend\n'
        )
        stats = CommandStats(url)
        stats.reset()
        run = run_wrk(base, script, max(1, round(seconds)), connections, 1, stats)
        calls = stats.scripts()[0]
        stats.close()
    n = max(run.requests, 1)
    note = (f"wrk on core 1, server on core 0; server CPU {run.cpu_us:.0f} µs/request, "
            f"{run.round_trips:.2f} Redis round trips/request")  # fmt: skip
    return run.rate, run.errors, calls / n, run.redis_us, note


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench events")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--pipeline", type=int, default=100)
    args = parser.parse_args(argv)
    with private_redis() as redis_server:
        url = redis_server.url
        bare, bare_usec = asyncio.run(
            _raw(url, args.seconds, args.visitors, args.pipeline, sdk=False)
        )
        raw, raw_usec = asyncio.run(_raw(url, args.seconds, args.visitors, args.pipeline, sdk=True))
        wrk = shutil.which("wrk") is not None and shutil.which("taskset") is not None
        if wrk:
            assert redis_server.process is not None
            subprocess.run(["taskset", "-p", "-c", "1", str(redis_server.process.pid)],
                           check=True, capture_output=True)  # fmt: skip
        with server_process(url, TOKEN, pin_core=0 if wrk else None) as base:
            if wrk:
                http, errors, http_calls, http_usec, driver = _wrk_events(
                    base, url, args.seconds, args.visitors, args.concurrency
                )
            else:
                http, errors, http_calls, http_usec = asyncio.run(
                    _http(base, url, args.seconds, args.visitors, args.concurrency)
                )
                driver = "clients in this process, sharing the cores with the server"
    print(
        f"segserver bench events: {args.seconds:.0f} s each, {args.visitors} visitors, "
        "one page_view per call (the SDK's properties and an event id unless 'bare')"
    )
    print(row(f"raw EVALSHA apply_events, bare page views, pipelines of {args.pipeline}",
              bare, "events/s"))  # fmt: skip
    print(
        row(f"raw EVALSHA apply_events, pipelines of {args.pipeline} (baseline)", raw, "events/s")
    )
    print(row(f"POST /v1/events, 1 event/request, {args.concurrency} connections", http,
              "events/s", raw))  # fmt: skip
    print(f"  ({driver})")
    print("Redis time (INFO commandstats, EVALSHA incl. the commands it runs):")
    print(row("raw: apply_events per bare page view", bare_usec, "µs"))
    print(row("raw: apply_events per page view", raw_usec, "µs"))
    print(row(f"http: every script per page view ({http_calls:.1f} calls)", http_usec, "µs"))
    if errors:
        print(f"  ({errors} HTTP errors)")
    return 0
