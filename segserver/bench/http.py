"""`segserver bench http`: the page view against the bare HTTP layer, in one run.

A private Redis; `segserver serve` (1 worker pinned to core 0, or 2 workers); `wrk`
and Redis on core 1; 20 active segments (13 prebuilt + 7), 10 active campaigns over
two placements, N seeded visitors. For each server (1 and 2 workers):

* the ceiling: a fixed-JSON handler in the same app (every middleware included) —
  the baseline every other row is a ratio of;
* `POST /v1/context`: one page_view event and two placements per request, random
  seeded visitors;
* `POST /v1/events`: one page_view event per request;

each with its server CPU per request (the server processes' CPU time from /proc over
requests answered) and Redis round trips per request (the server's own counter,
segserver_redis_round_trips_total, so counted, not assumed), and the Redis time of
the scripts per request (INFO commandstats). Then the in-server latency of
/v1/context paced at half of its own maximum (open loop; percentiles from the server's
own histogram), on a quiet machine and, with `--load`, while CPU-heavy processes
(one per core) run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from segserver.bench.common import private_redis, row, server_process
from segserver.storage.stats import CommandStats

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
_AUDIENCES = ["new_visitors", "cart_abandoners", "high_value_customers", "de",
              "returning_customers", "mobile_visitors", "window_shoppers", "google",
              "recent_buyers", "everyone"]  # fmt: skip


@dataclass(frozen=True)
class SiteKeys:
    public: str  # the site key of every page (X-Segserver-Key)
    server: str  # the shop back end's secret key (trusted events: purchases)


async def _setup(base: str, visitors: int) -> SiteKeys:
    """The bench site with its segments, placements and campaigns, and `visitors`
    seeded through POST /v1/events with the server key (purchases are trusted events,
    as a shop's back end sends them)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as s:
        site = await (await s.post(f"{base}/v1/admin/sites", json={"id": "bench"})).json()
        sb = f"{base}/v1/admin/sites/bench"
        for sid, rule in _EXTRA_SEGMENTS:
            await s.post(f"{sb}/segments", json={"id": sid, "status": "active", "rule": rule})
        for pid, kind in (("popup", "popup"), ("hero", "banner")):
            await s.post(f"{sb}/placements", json={"id": pid, "kind": kind})
        for i, seg in enumerate(_AUDIENCES):
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
        keys = SiteKeys(site["site_key"], site["server_key"])
        backend = {"Authorization": f"Bearer {keys.server}"}
        rng = random.Random(1)
        sem = asyncio.Semaphore(32)

        async def seed(first: int) -> None:
            events = []
            for i in range(first, min(first + 50, visitors)):
                events.append({"visitor_id": f"v{i}", "type": "page_view", "properties": {
                    "country": rng.choice(["DE", "FR", "AT", "US"]),
                    "device": rng.choice(["mobile", "desktop"])}})  # fmt: skip
                if i % 3 == 0:
                    events.append({"visitor_id": f"v{i}", "type": "purchase",
                                   "properties": {"value": rng.uniform(10, 900)}})  # fmt: skip
            async with sem:
                resp = await s.post(f"{base}/v1/events", json=events, headers=backend)
                resp.raise_for_status()

        await asyncio.gather(*(seed(i) for i in range(0, visitors, 50)))
        return keys


def _wrk_script(path: Path, key: str, visitors: int, target: str) -> None:
    """A wrk script posting to `target` for random seeded visitors."""
    vid = "'v' .. math.random(0, " + str(visitors - 1) + ")"
    bodies = {
        "/v1/context": '\'{"visitor_id":"\' .. ' + vid + " .. "
        '\'","events":[{"type":"page_view"}],"placements":["popup","hero"]}\'',
        "/v1/events": '\'[{"visitor_id":"\' .. ' + vid + ' .. \'","type":"page_view"}]\'',
        "/_bench/ceiling": '\'{"visitor_id":"v1"}\'',
    }
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["X-Segserver-Key"] = "{key}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'request = function() return wrk.format(nil, "{target}", nil, {bodies[target]}) end\n'
    )


@dataclass
class Run:
    rate: float  # requests/s
    requests: int
    errors: int  # non-2xx answers
    cpu_us: float  # server CPU per request
    round_trips: float  # Redis round trips per request
    redis_us: float  # Redis time of scripts per request


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _metric(base: str, name: str, workers: int) -> float:
    """Sum of a counter over the server's workers (each answers /metrics for itself;
    with SO_REUSEPORT, fresh connections land on every worker)."""
    seen: dict[int, float] = {}
    for _ in range(50 * workers):
        with urllib.request.urlopen(f"{base}/metrics") as resp:
            text = resp.read().decode()
        pid = int(re.search(r"^segserver_process_id (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
        found = re.search(rf"^{name} ([\d.e+]+)$", text, re.M)
        seen[pid] = float(found.group(1)) if found else 0.0
        if len(seen) == workers:
            break
    return sum(seen.values())


def _pids(base: str, workers: int) -> list[int]:
    seen: set[int] = set()
    for _ in range(50 * workers):
        with urllib.request.urlopen(f"{base}/healthz") as resp:
            seen.add(int(json.loads(resp.read())["pid"]))
        if len(seen) == workers:
            break
    return sorted(seen)


def run_wrk(base: str, script: Path, seconds: int, connections: int, workers: int,
            redis: CommandStats) -> Run:  # fmt: skip
    pids = _pids(base, workers)
    cpu0 = _cpu_seconds(pids)
    trips0 = _metric(base, "segserver_redis_round_trips_total", workers)
    redis0 = redis.scripts()[1]
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s",
         str(script), base],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu1 = _cpu_seconds(pids)
    trips1 = _metric(base, "segserver_redis_round_trips_total", workers)
    redis1 = redis.scripts()[1]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    n = max(requests, 1)
    return Run(rate, requests, int(errors.group(1)) if errors else 0, 1e6 * (cpu1 - cpu0) / n,
               (trips1 - trips0) / n, (redis1 - redis0) / n)  # fmt: skip


async def _paced(base: str, key: str, visitors: int, rate: float, seconds: float) -> int:
    """Send at a fixed rate (open loop) for `seconds`; returns how many were sent."""
    headers = {"X-Segserver-Key": key}
    sent = 0
    tasks: set[asyncio.Task[Any]] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as s:

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
    """The q-quantile by linear interpolation inside the histogram's bucket."""
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


def _metrics_text(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics") as resp:
        return str(resp.read().decode())


@contextmanager
def _cpu_load(on: bool) -> Iterator[None]:
    """One busy process per core (a CPU-heavy job sharing the machine)."""
    procs = []
    if on:
        for _ in range(os.cpu_count() or 1):
            busy = "x = 0\nwhile True: x = (x * 31 + 7) % 1000003"
            procs.append(subprocess.Popen([sys.executable, "-c", busy]))
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _latency(base: str, key: str, visitors: int, rate: float, seconds: int, load: bool
             ) -> tuple[int, list[float]]:  # fmt: skip
    before = _histogram(_metrics_text(base), "/v1/context")
    with _cpu_load(load):
        sent = asyncio.run(_paced(base, key, visitors, rate, seconds))
    after = _histogram(_metrics_text(base), "/v1/context")
    before = before or [(le, 0.0) for le, _ in after]
    window = [(le, n - b) for (le, n), (_, b) in zip(after, before, strict=True)]
    return sent, [_quantile(window, q) * 1000 for q in (0.5, 0.99, 0.999)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench http")
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="server processes to measure")
    parser.add_argument(
        "--load", action="store_true", help="also measure the latency while CPU-heavy processes run"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("segserver bench http needs wrk and taskset (Debian: apt-get install wrk)")
        return 2
    workers_list = [int(w) for w in args.workers.split(",")]
    results: dict[int, dict[str, Run]] = {}
    latency: dict[bool, tuple[float, int, list[float]]] = {}
    with private_redis() as redis_server, tempfile.TemporaryDirectory() as tmp:
        assert redis_server.process is not None
        subprocess.run(["taskset", "-p", "-c", "1", str(redis_server.process.pid)],
                       check=True, capture_output=True)  # fmt: skip
        stats = CommandStats(redis_server.url)
        env = {"SEGSERVER_BENCH_CEILING_ROUTE": "true", "SEGSERVER_EXPIRY_INTERVAL_SECONDS": "0",
               "SEGSERVER_REDIS_BUDGET_MS": "1000", "SEGSERVER_DATA_DIR": tmp}  # fmt: skip
        key = ""
        seeded = 0.0
        for workers in workers_list:
            extra = ["--workers", str(workers)] if workers > 1 else []
            with server_process(redis_server.url, TOKEN, env, extra,
                                pin_core=0 if workers == 1 else None) as base:  # fmt: skip
                if not key:
                    started = time.perf_counter()
                    key = asyncio.run(_setup(base, args.visitors)).public
                    seeded = time.perf_counter() - started
                scripts = {}
                for target in ("/_bench/ceiling", "/v1/context", "/v1/events"):
                    scripts[target] = Path(tmp) / f"{target.strip('/').replace('/', '_')}.lua"
                    _wrk_script(scripts[target], key, args.visitors, target)
                run_wrk(base, scripts["/v1/context"], 2, args.connections, workers, stats)  # warm
                results[workers] = {
                    t: run_wrk(base, s, args.seconds, args.connections, workers, stats)
                    for t, s in scripts.items()
                }
                if workers == 1:
                    half = results[1]["/v1/context"].rate / 2
                    for load in (False, True) if args.load else (False,):
                        sent, qs = _latency(base, key, args.visitors, half, args.seconds, load)
                        latency[load] = (half, sent, qs)
    _report(args, seeded, results, latency)
    return 0


def _report(args: argparse.Namespace, seeded: float, results: dict[int, dict[str, Run]],
            latency: dict[bool, tuple[float, int, list[float]]]) -> None:  # fmt: skip
    print(
        f"segserver bench http: {args.visitors:,} visitors (seeded in {seeded:.0f} s), 20 active "
        f"segments, 10 campaigns, 2 placements; wrk and Redis on core 1, {args.connections} "
        f"connections, {args.seconds} s per run"
    )
    for workers, runs in results.items():
        ceiling = runs["/_bench/ceiling"].rate
        where = "core 0" if workers == 1 else "both cores"
        print(f"\n  {workers} worker{'s' if workers > 1 else ''} ({where}):")
        labels = {"/_bench/ceiling": "ceiling: fixed-JSON handler (baseline)",
                  "/v1/context": "POST /v1/context (1 page_view, 2 placements)",
                  "/v1/events": "POST /v1/events (1 page_view)"}  # fmt: skip
        for target, run in runs.items():
            base = None if target == "/_bench/ceiling" else ceiling
            print(row(labels[target], run.rate, "req/s", base))
            print(f"      server CPU {run.cpu_us:,.0f} µs/request, Redis round trips "
                  f"{run.round_trips:.2f}/request, Redis script time {run.redis_us:.1f} µs/"
                  f"request, non-2xx {run.errors}")  # fmt: skip
    for load, (rate, sent, (p50, p99, p999)) in latency.items():
        what = "while CPU-heavy processes run" if load else "quiet"
        print(f"\n  /v1/context paced at half its maximum ({rate:,.0f} req/s, {sent:,} "
              f"requests), {what}; in-server latency (the server's histogram):")  # fmt: skip
        print(f"    p50 {p50:.2f} ms   p99 {p99:.2f} ms   p99.9 {p999:.2f} ms")
