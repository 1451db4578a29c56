"""`segserver bench http`: /v1/context against a fixed-JSON aiohttp handler.

One run: a private Redis, `segserver serve` pinned to core 0, `wrk` and Redis on
core 1; 20 active segments, 10 active campaigns over two placements, N seeded
visitors. Measured: the maximum requests/s of the ceiling handler (baseline) and of
/v1/context (one page_view event, two placements per request, random visitors), then
the in-server latency of /v1/context at half its own maximum (paced load; the
percentiles come from the server's own histogram at /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from segserver.bench.common import private_redis, row, server_process

TOKEN = "bench-admin-token-0123456789abcdefghij"
_EXTRA_SEGMENTS = [
    ("de", {"attr": "country", "op": "eq", "value": "DE"}),
    ("dach", {"attr": "country", "op": "in", "value": ["DE", "AT", "CH"]}),
    ("desktop", {"attr": "device", "op": "eq", "value": "desktop"}),
    ("active_week", {"attr": "page_views", "window": "7d", "op": "gte", "value": 3}),
    ("browsers", {"attr": "product_views", "op": "gte", "value": 5}),
    ("spenders", {"attr": "total_spent", "op": "between", "value": [100, 1000]}),
    ("google", {"attr": "source", "op": "eq", "value": "google"}),
]


async def _setup(base: str, visitors: int) -> str:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as s:
        site = await (await s.post(f"{base}/v1/admin/sites", json={"id": "bench"})).json()
        sb = f"{base}/v1/admin/sites/bench"
        for sid, rule in _EXTRA_SEGMENTS:
            await s.post(f"{sb}/segments", json={"id": sid, "status": "active", "rule": rule})
        for pid, kind in (("popup", "popup"), ("hero", "banner")):
            await s.post(f"{sb}/placements", json={"id": pid, "kind": kind})
        segments = ["new_visitors", "cart_abandoners", "high_value_customers", "de",
                    "returning_customers", "mobile_visitors", "window_shoppers", "google",
                    "recent_buyers", "everyone"]  # fmt: skip
        for i, seg in enumerate(segments):
            placement = "popup" if i % 2 == 0 else "hero"
            kind = "popup" if placement == "popup" else "banner"
            await s.post(
                f"{sb}/content",
                json={"id": f"c{i}", "kind": kind, "payload": {"title": f"T{i}", "body": "b"}},
            )
            await s.post(f"{sb}/campaigns", json={
                "id": f"camp{i}", "placement": placement, "status": "active", "priority": i,
                "audience": {"include": [seg]}, "holdout": 5,
                "variants": [{"id": "a", "content": f"c{i}", "weight": 1},
                             {"id": "b", "content": f"c{i}", "weight": 1}],
                "caps": [{"per": "day", "max": 1000}]})  # fmt: skip
        key = site["site_key"]
        rng = random.Random(1)
        sem = asyncio.Semaphore(32)

        async def seed(i: int) -> None:
            events = [{"visitor_id": f"v{i}", "type": "page_view", "properties": {
                "country": rng.choice(["DE", "FR", "AT", "US"]),
                "device": rng.choice(["mobile", "desktop"])}}]  # fmt: skip
            if i % 3 == 0:
                events.append({"visitor_id": f"v{i}", "type": "purchase",
                               "properties": {"value": rng.uniform(10, 900)}})  # fmt: skip
            async with sem:
                await s.post(f"{base}/v1/events", json=events, headers={"X-Segserver-Key": key})

        await asyncio.gather(*(seed(i) for i in range(visitors)))
        return str(key)


def _wrk_script(path: Path, key: str, visitors: int, context: bool) -> None:
    """A wrk script posting /v1/context for random seeded visitors (or the ceiling)."""
    if context:
        body = (
            '\'{"visitor_id":"v\' .. math.random(0, ' + str(visitors - 1) + ") .. "
            '\'","events":[{"type":"page_view"}],'
            '"placements":["popup","hero"]}\''
        )
        target = "/v1/context"
    else:
        body = '\'{"visitor_id":"v1"}\''
        target = "/_bench/ceiling"
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["X-Segserver-Key"] = "{key}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'request = function() return wrk.format(nil, "{target}", nil, {body}) end\n'
    )


def _wrk(base: str, script: Path, seconds: int, connections: int) -> tuple[float, str]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, errors.group(1) if errors else "0"


async def _paced(base: str, key: str, visitors: int, rate: float, seconds: float) -> int:
    """Send at a fixed rate (open loop) for `seconds`; returns how many were sent."""
    headers = {"X-Segserver-Key": key}
    sent = 0
    tasks: set[asyncio.Task[Any]] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:

        async def one(i: int) -> None:
            body = {"visitor_id": f"v{i % visitors}", "events": [{"type": "page_view"}],
                    "placements": ["popup", "hero"]}  # fmt: skip
            async with s.post(f"{base}/v1/context", json=body, headers=headers) as r:
                await r.read()

        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                t = asyncio.create_task(one(random.randrange(visitors)))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
    return sent


def _histogram(metrics: str, route: str) -> list[tuple[float, float]]:
    pat = re.compile(
        r'segserver_request_seconds_bucket\{le="([^"]+)",route="'
        + re.escape(route)
        + r'",status="2xx"\} ([\d.e+]+)'
    )
    return [(float("inf") if le == "+Inf" else float(le), float(n))
            for le, n in pat.findall(metrics)]  # fmt: skip


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1]
    want = q * total
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= want:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (want - prev_n) / max(n - prev_n, 1)
        prev_le, prev_n = le, n
    return prev_le


async def _metrics(base: str) -> str:
    async with aiohttp.ClientSession() as s:
        return await (await s.get(f"{base}/metrics")).text()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench http")
    parser.add_argument("--visitors", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("segserver bench http needs wrk and taskset (Debian: apt-get install wrk)")
        return 2
    with private_redis() as redis_server, tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["taskset", "-p", "-c", "1", str(redis_server.process.pid)],  # type: ignore[union-attr]
                       check=True, capture_output=True)  # fmt: skip
        env = {"SEGSERVER_BENCH_CEILING_ROUTE": "true", "SEGSERVER_EXPIRY_INTERVAL_SECONDS": "0",
               "SEGSERVER_REDIS_BUDGET_MS": "1000", "SEGSERVER_DATA_DIR": tmp}  # fmt: skip
        with server_process(redis_server.url, TOKEN, env, pin_core=0) as base:
            started = time.perf_counter()
            key = asyncio.run(_setup(base, args.visitors))
            seeded = time.perf_counter() - started
            ceiling_lua, context_lua = Path(tmp) / "ceiling.lua", Path(tmp) / "context.lua"
            _wrk_script(ceiling_lua, key, args.visitors, context=False)
            _wrk_script(context_lua, key, args.visitors, context=True)
            _wrk(base, context_lua, 2, args.connections)  # warm-up
            ceiling, _ = _wrk(base, ceiling_lua, args.seconds, args.connections)
            context, errors = _wrk(base, context_lua, args.seconds, args.connections)
            before = _histogram(asyncio.run(_metrics(base)), "/v1/context")
            sent = asyncio.run(_paced(base, key, args.visitors, context / 2, args.seconds))
            after = _histogram(asyncio.run(_metrics(base)), "/v1/context")
    before = before or [(le, 0.0) for le, _ in after]
    window = [(le, n - b) for (le, n), (_, b) in zip(after, before, strict=True)]
    print(
        f"segserver bench http: {args.visitors:,} visitors (seeded in {seeded:.0f} s), "
        f"20 active segments, 10 campaigns, 2 placements; server on core 0, wrk + Redis on "
        f"core 1, {args.connections} connections, {args.seconds} s each"
    )
    print(row("ceiling: fixed-JSON aiohttp handler (baseline)", ceiling, "req/s"))
    print(row("POST /v1/context (1 page_view, 2 placements)", context, "req/s", ceiling))
    print(f"  (non-2xx answers of /v1/context: {errors})")
    print(
        f"  paced at half of its maximum ({context / 2:,.0f} req/s, {sent:,} requests), "
        "in-server latency from the server's histogram:"
    )
    for q in (0.5, 0.95, 0.99):
        print(f"    p{int(q * 100)}: {_quantile(window, q) * 1000:.2f} ms")
    return 0
