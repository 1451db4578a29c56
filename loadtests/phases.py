"""The phases of a load-test run: Redis CPU, seeding, locust, wrk, paced load.

Each phase returns plain dicts for the report (loadtests/report.py); the runner
(loadtests/run.py) strings them together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis

from loadtests.report import Samples
from segserver.bench.http import TOKEN, SiteKeys, _histogram, _metrics_text, _paced, _quantile

HERE = Path(__file__).resolve().parent
SITE = "bench"  # the site segserver.bench.http._setup creates
PLACEMENTS = ["popup", "hero"]
CAMPAIGNS = [f"camp{i}" for i in range(10)]
ID_PREFIX = "demo-1-"  # segserver.demo.seed_visitors names visitors demo-<seed>-<i>
HTTP_PREFIX = "lt-"  # visitors seeded through /v1/events (with --url and no --redis-url)


class RedisCpu:
    """Redis' own CPU time (INFO cpu, user + sys) over a phase."""

    def __init__(self, url: str | None) -> None:
        self.client = redis.Redis.from_url(url) if url else None

    def now(self) -> float | None:
        if self.client is None:
            return None
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    @contextlib.contextmanager
    def measure(self, into: dict[str, Any]) -> Iterator[None]:
        before, started = self.now(), time.perf_counter()
        yield
        after, wall = self.now(), time.perf_counter() - started
        into["redis_cpu"] = (
            None
            if before is None or after is None
            else {"seconds": after - before, "percent_of_core": 100 * (after - before) / wall}
        )


# seeding ----------------------------------------------------------------------------


async def seed_direct(redis_url: str, visitors: int) -> str:
    """Profiles written straight into Redis by segserver.demo (one Lua call per shard
    and chunk), then the bulk recompute: ~minutes for 1 M instead of hours."""
    from segserver.config import load_settings
    from segserver.demo import seed_visitors
    from segserver.wiring import open_services

    settings = load_settings(None, admin_token=TOKEN, redis_url=redis_url)
    async with open_services(settings, redis_url) as services:
        await services.scripts.load_all()
        shown = [0]

        def progress(done: int) -> None:
            if done - shown[0] >= 100_000 or done == visitors:
                shown[0] = done
                print(f"loadtest: {done:,} of {visitors:,} visitors written", flush=True)

        await seed_visitors(services, SITE, visitors, seed=1, progress=progress)
    return ID_PREFIX


async def seed_http(base: str, server_key: str, visitors: int) -> str:
    """Through POST /v1/events with the server key (purchases are trusted events), 50
    visitors per request, 16 requests in flight."""
    headers = {"Authorization": f"Bearer {server_key}"}
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(headers=headers) as s:

        async def batch(lo: int) -> None:
            evts: list[dict[str, Any]] = []
            for i in range(lo, min(lo + 50, visitors)):
                evts.append(
                    {
                        "visitor_id": f"{HTTP_PREFIX}{i}",
                        "type": "page_view",
                        "properties": {
                            "country": ["DE", "FR", "AT", "US"][i % 4],
                            "device": ["mobile", "desktop"][i % 2],
                        },
                    }
                )
                if i % 3 == 0:
                    evts.append(
                        {
                            "visitor_id": f"{HTTP_PREFIX}{i}",
                            "type": "purchase",
                            "properties": {"value": 10 + i % 900},
                        }
                    )
            async with sem, s.post(f"{base}/v1/events", json=evts) as resp:
                resp.raise_for_status()

        await asyncio.gather(*(batch(lo) for lo in range(0, visitors, 50)))
    return HTTP_PREFIX


# locust -----------------------------------------------------------------------------


def locust(base: str, keys: SiteKeys, prefix: str, args: argparse.Namespace, out: Path
           ) -> Samples:  # fmt: skip
    samples = out / "locust-samples.csv"
    env = {
        **os.environ,
        "LOADTEST_SITE": SITE,
        "LOADTEST_SITE_KEY": keys.public,
        "LOADTEST_SERVER_KEY": keys.server,
        "LOADTEST_ADMIN_TOKEN": TOKEN,
        "LOADTEST_VISITORS": str(args.visitors),
        "LOADTEST_ID_PREFIX": prefix,
        "LOADTEST_ZIPF": str(args.zipf),
        "LOADTEST_THINK": str(args.think),
        "LOADTEST_PLACEMENTS": ",".join(PLACEMENTS),
        "LOADTEST_CAMPAIGNS": ",".join(CAMPAIGNS),
        "LOADTEST_SAMPLES": str(samples),
        "PYTHONPATH": str(HERE.parent),
    }
    spawn = args.spawn_rate or max(1.0, args.users / max(1.0, args.seconds / 5))
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--host",
        base,
        "-u",
        str(args.users),
        "-r",
        f"{spawn:g}",
        "-t",
        f"{args.seconds}s",
        "--stop-timeout",
        "2",
        "--only-summary",
        "--csv",
        str(out / "locust"),
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    log = out / "locust.log"
    with log.open("w") as f:
        subprocess.run(
            cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True, timeout=args.seconds + 120
        )
    return Samples.read(samples)


def locust_summary(s: Samples, args: argparse.Namespace) -> dict[str, Any]:
    names = sorted(set(s.name))
    return {
        "users": args.users,
        "seconds": args.seconds,
        "think": args.think,
        "workers": 1,
        "context": s.where("/v1/context").summary(),
        "all": s.summary(),
        "by_name": {n: s.where(n).summary() for n in names},
    }


# wrk --------------------------------------------------------------------------------

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"socket_errors":%d,' ..
    '"status_errors":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def wrk_script(path: Path, key: str, prefix: str, visitors: int, target: str) -> None:
    """Like segserver.bench.http's script, for the seeded ids, with every percentile."""
    if target == "context":
        body = (
            '\'{"visitor_id":"'
            + prefix
            + "' .. math.random(0, "
            + str(visitors - 1)
            + ') .. \'","events":[{"type":"page_view","event_id":"w\' .. '
            'math.random(1, 2147483647) .. \'","properties":{"device":"mobile"}}],'
            '"placements":["popup","hero"]}\''
        )
        url = "/v1/context"
    else:
        body, url = '\'{"visitor_id":"v1"}\'', "/_bench/ceiling"
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["X-Segserver-Key"] = "{key}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'request = function() return wrk.format(nil, "{url}", nil, {body}) end\n' + _DONE
    )


def wrk(base: str, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    # wrk (and Redis) on core 1; a 1-worker server on core 0 (as segserver bench http)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    r = json.loads(line.removeprefix("WRKJSON "))
    return {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "requests": r["requests"],
        "errors": r["socket_errors"] + r["status_errors"],
        **{
            f"{q}_ms": r[f"{k}_us"] / 1000
            for q, k in (("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"))
        },
        "max_ms": r["max_us"] / 1000,
    }


def capacity(
    base: str, workers: int, scripts: dict[str, Path], args: argparse.Namespace, cpu: RedisCpu
) -> list[dict[str, Any]]:
    wrk(base, scripts["context"], 2, args.connections)  # warm-up
    runs: list[dict[str, Any]] = []
    for target in ("ceiling", "context"):
        run: dict[str, Any] = {"workers": workers, "target": target}
        with cpu.measure(run):
            run |= wrk(base, scripts[target], args.wrk_seconds, args.connections)
        runs.append(run)
    runs[1]["of_ceiling"] = runs[1]["rps"] / runs[0]["rps"] if runs[0]["rps"] else None
    return runs


# paced ------------------------------------------------------------------------------


def paced_run(base: str, key: str, rate: float, seconds: int, cpu: RedisCpu) -> dict[str, Any]:
    """segserver.bench.http's open-loop sender at `rate`; server-side percentiles from
    the server's own histogram (buckets, so interpolated). Its visitor ids are v<i>:
    first sight creates their profiles, a heavier mix than seeded visitors."""
    before = _histogram(_metrics_text(base), "/v1/context")
    run: dict[str, Any] = {"rate": rate}
    with cpu.measure(run):
        started = time.perf_counter()
        run["sent"] = asyncio.run(_paced(base, key, 100_000, rate, seconds))
        # the sender waits for every answer: a server that cannot keep up stretches this
        run["achieved_rps"] = run["sent"] / (time.perf_counter() - started)
    after = _histogram(_metrics_text(base), "/v1/context")
    before = before or [(le, 0.0) for le, _ in after]
    window = [(le, n - b) for (le, n), (_, b) in zip(after, before, strict=True)]
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999)):
        run[f"{label}_ms"] = _quantile(window, q) * 1000 if window else None
    return run
