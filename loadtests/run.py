"""`python -m loadtests.run` (or `loadtests/run`): one command that proves what latency
segserver holds at what traffic.

Steps: a private Redis and `segserver serve` (or `--url`), the bench site of
`segserver bench http` (20 segments, 10 campaigns over two placements), N seeded
visitors, locust headless as a subprocess (importing locust monkey-patches the
process, so this module never does), paced open-loop runs for objectives that name a
rate, then raw capacity with wrk on /v1/context and on the fixed-JSON ceiling
handler, with 1 and 2 server workers. Writes report.md, report.json and two PNG plots
to `--out`; exits 1 when an objective fails, 2 on a usage error.

    python -m loadtests.run --visitors 1000000 --users 300 --seconds 60 \
        --wrk-seconds 15 --objective "p99<=10ms" --objective "p99<=10ms@2000rps"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.phases import (
    HERE,
    RedisCpu,
    capacity,
    locust,
    locust_summary,
    paced_run,
    seed_direct,
    seed_http,
    wrk_script,
)
from loadtests.report import Objective, Samples, parse_objective, write_plots, write_report
from segserver.bench.common import private_redis, server_process
from segserver.bench.http import TOKEN, _setup


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtests/run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--url",
        help="target this server instead of starting one; it must run "
        f"with SEGSERVER_ADMIN_TOKEN={TOKEN} and SEGSERVER_BENCH_CEILING_ROUTE=true "
        "and have no site 'bench' yet (wrk runs only with its own workers then)",
    )
    p.add_argument("--redis-url", help="with --url: its Redis, to seed directly and read Redis CPU")
    p.add_argument(
        "--visitors", type=int, default=10_000, help="seeded population (1000000 for a full run)"
    )
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of popularity")
    p.add_argument("--users", type=int, default=50, help="locust users")
    p.add_argument(
        "--spawn-rate",
        type=float,
        default=0.0,
        help="users/s (default: all within a fifth of the run)",
    )
    p.add_argument("--seconds", type=int, default=30, help="locust run time (0 skips locust)")
    p.add_argument(
        "--think", type=float, default=1.0, help="think-time scale (0.1 = 10× faster visitors)"
    )
    p.add_argument("--wrk-seconds", type=int, default=10, help="each wrk run (0 skips wrk)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--workers", default="1,2", help="server workers for the wrk runs")
    p.add_argument("--paced-seconds", type=int, default=10, help="each paced objective run")
    p.add_argument(
        "--objective",
        action="append",
        default=[],
        metavar="'p99<=10ms[@2000rps]'",
        help="latency objective; without @rate checked on the locust run, with "
        "@rate on a paced open-loop run at that rate; repeatable",
    )
    p.add_argument(
        "--out", type=Path, help="report directory (default loadtests/reports/<UTC time>)"
    )
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    try:
        args.objectives = [parse_objective(o) for o in args.objective]
        args.worker_counts = [int(w) for w in args.workers.split(",") if w]
    except ValueError as exc:
        p.error(str(exc))
    if args.wrk_seconds and (shutil.which("wrk") is None or shutil.which("taskset") is None):
        p.error(
            "wrk and taskset are needed for the capacity runs (Debian: apt-get install "
            "wrk), or pass --wrk-seconds 0"
        )
    return args


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def _check(objectives: list[Objective], data: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for o in objectives:
        if o.rate is None:
            measured = (data.get("locust") or {}).get("context", {}).get(f"{o.quantile}_ms")
            where = "client side, locust run"
        else:
            paced = next(p for p in data["paced"] if p["rate"] == o.rate)
            measured = paced.get(f"{o.quantile}_ms")
            kept_up = paced["achieved_rps"] >= 0.95 * o.rate
            where = (
                f"server side, paced at {o.rate:g} req/s; answered "
                f"{paced['achieved_rps']:,.0f} req/s"
            )
            if not kept_up:
                where += ": the server did not keep up with the rate"
        passed = measured is not None and o.holds(measured) and (o.rate is None or kept_up)
        results.append(
            {"objective": o.text, "measured_ms": measured, "where": where, "passed": passed}
        )
    return results


# the run ----------------------------------------------------------------------------

_SERVER_ENV = {"SEGSERVER_BENCH_CEILING_ROUTE": "true"}


@contextlib.contextmanager
def _server(redis_url: str, data_dir: Path, workers: int) -> Iterator[str]:
    env = {
        **_SERVER_ENV,
        "SEGSERVER_DATA_DIR": str(data_dir),
        # compiled kernels survive between runs (tens of seconds the first time)
        "SEGSERVER_CACHE_DIR": str(Path.home() / ".cache" / "segserver-loadtest"),
    }
    args = ["--workers", str(workers)] if workers > 1 else []
    with server_process(redis_url, TOKEN, env, args, pin_core=0 if workers == 1 else None) as b:
        yield b


def run(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    out: Path = args.out or HERE / "reports" / started.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "run": {
            "started": started.isoformat(timespec="seconds"),
            "machine": _machine(),
            "load_average_at_start": list(os.getloadavg()),
            "command": shlex.join(["python", "-m", "loadtests.run", *args.argv]),
            "zipf": args.zipf,
            "connections": args.connections,
        }
    }
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="segload-") as tmp:
        if args.url:
            base, redis_url = args.url.rstrip("/"), args.redis_url
        else:
            redis_server = stack.enter_context(private_redis())
            redis_url = redis_server.url
            if redis_server.process is not None:  # Redis shares core 1 with the load generators
                subprocess.run(
                    ["taskset", "-p", "-c", "1", str(redis_server.process.pid)],
                    check=True,
                    capture_output=True,
                )
            base = stack.enter_context(_server(redis_url, Path(tmp), 1))
        cpu = RedisCpu(redis_url)
        stack.callback(cpu.close)
        keys = asyncio.run(_setup(base, 0))
        key = keys.public
        t0 = time.perf_counter()
        if redis_url:
            prefix = asyncio.run(seed_direct(redis_url, args.visitors))
            how = "profiles written directly, then bulk recompute"
        else:
            prefix = asyncio.run(seed_http(base, keys.server, args.visitors))
            how = "through POST /v1/events"
        data["seed"] = {
            "visitors": args.visitors,
            "seconds": time.perf_counter() - t0,
            "how": how,
            "id_prefix": prefix,
        }
        print(
            f"loadtest: {args.visitors:,} visitors seeded in {data['seed']['seconds']:.1f} s",
            flush=True,
        )
        samples = Samples.read(Path(tmp) / "none")
        if args.seconds:
            phase: dict[str, Any] = {}
            with cpu.measure(phase):
                samples = locust(base, keys, prefix, args, out)
            data["locust"] = locust_summary(samples, args) | phase
            c = data["locust"]["context"]
            print(
                f"loadtest: locust {c['requests']:,} /v1/context at {c['rps']:.0f} req/s, "
                f"p50 {c['p50_ms'] or 0:.1f} ms, p99 {c['p99_ms'] or 0:.1f} ms, "
                f"{c['errors']} errors",
                flush=True,
            )
        data["paced"] = [
            paced_run(base, key, rate, args.paced_seconds, cpu)
            for rate in sorted({o.rate for o in args.objectives if o.rate})
        ]
        if args.wrk_seconds:
            data["wrk"] = (
                f"1 thread, {args.connections} connections, {args.wrk_seconds} s "
                "per run, pinned to core 1 with Redis; a 1-worker server on core 0, "
                "2 workers unpinned"
            )
            scripts = {t: Path(tmp) / f"{t}.lua" for t in ("context", "ceiling")}
            for t, path in scripts.items():
                wrk_script(path, key, prefix, args.visitors, t)
            data["capacity"] = []
            for workers in args.worker_counts:
                if args.url and workers != 1:
                    continue
                if workers == 1 or args.url:
                    data["capacity"] += capacity(base, workers, scripts, args, cpu)
                else:
                    with _server(redis_url, Path(tmp), workers) as wbase:
                        data["capacity"] += capacity(wbase, workers, scripts, args, cpu)
            for c in data["capacity"]:
                print(
                    f"loadtest: wrk {c['target']} with {c['workers']} worker(s): "
                    f"{c['rps']:,.0f} req/s, p99 {c['p99_ms']:.1f} ms",
                    flush=True,
                )
    data["run"]["load_average_at_end"] = list(os.getloadavg())
    data["objectives"] = _check(args.objectives, data)
    data["plots"] = write_plots(out, samples.where("/v1/context"), data.get("capacity", []))
    write_report(out, data)
    print(f"loadtest: report in {out / 'report.md'}", flush=True)
    failed = [o["objective"] for o in data["objectives"] if not o["passed"]]
    if failed:
        print(f"loadtest: objectives NOT met: {', '.join(failed)}", flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_args(argv))


if __name__ == "__main__":
    sys.exit(main())
