"""`segserver bench durability`: what the embedded Redis' `appendfsync` costs on the
apply path (events/s through the apply_events script), per policy.

One run, one machine, one disk: the data directory's file system (fsync on tmpfs
costs nothing, so the default is a directory under `data_dir`, not /tmp). For each
policy a fresh redis-server with the append-only file on, and page views (one event
with an event id each) applied through `ProfileStore` three ways:
  1. one caller, one event per call, waiting for each answer (a quiet site);
  2. N concurrent callers, one event per call (a busy server: Redis fsyncs once per
     turn of its event loop, so calls answered in the same turn share one fsync);
  3. pipelines of 100 calls (an import).
The policies run in turns (no, everysec, always, again ...); each figure is the
median of its turns; ratios are against everysec, the default, in the same run. The
disk's own fsync latency is measured at the start of every turn, in its directory
(on a shared disk it moves with the neighbours' writes: ext4 commits their dirty
data with our fsync).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

from segserver.bench.common import row
from segserver.config import load_settings
from segserver.profile.events import EventCatalog, Limits, plan_ops, validate_event
from segserver.profile.schema import Schema
from segserver.storage.embedded import APPENDFSYNC, EmbeddedRedis
from segserver.wiring import build_services

MODES = ("1 caller", "concurrent", "pipelined")


def fsync_latency(directory: Path, samples: int = 200) -> float:
    """Median seconds to append 100 bytes to a file and fsync it, in `directory`."""
    times = []
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        for _ in range(samples):
            f.write(b"x" * 100)
            f.flush()
            started = time.perf_counter()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _drive(url: str, mode: str, seconds: float, concurrency: int, pipeline: int,
                 visitors: int) -> float:  # fmt: skip
    """Events/s applied for `seconds` in `mode`."""
    settings = load_settings(redis_url=url, key_prefix="durbench", shards=16)
    services = build_services(settings)
    await services.scripts.load_all()
    catalog, now = EventCatalog(Schema()), time.time()
    event = validate_event({"visitor_id": "x", "type": "page_view"}, "e", catalog, Limits(), now)
    ops = plan_ops(event, catalog, Limits()).pack(lambda a, v: 1)
    layout = Schema().layout
    numbers = itertools.count()
    done = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def one_at_a_time() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = next(numbers)
            await services.profiles.apply("b", f"v{n % visitors}", layout, [(f"e{n}", ops)], now)
            done += 1

    if mode == "pipelined":
        while time.perf_counter() < deadline:
            calls = [(f"v{n % visitors}", [(f"e{n}", ops)])
                     for n in itertools.islice(numbers, pipeline)]  # fmt: skip
            await services.profiles.apply_pipelined("b", calls, layout, now)
            done += pipeline
    else:
        callers = 1 if mode == "1 caller" else concurrency
        await asyncio.gather(*(one_at_a_time() for _ in range(callers)))
    rate = done / (time.perf_counter() - started)
    await services.close()
    return rate


def _turn(base: Path, policy: str, args: argparse.Namespace) -> dict[str, float]:
    """Events/s of each mode under `policy`, and the disk's fsync latency just before."""
    with tempfile.TemporaryDirectory(dir=base, prefix=f"{policy}-") as tmp:
        server = EmbeddedRedis(Path(tmp), appendfsync=policy)
        server.start()
        try:
            out = {"fsync": fsync_latency(Path(tmp))}
            for mode in MODES:
                out[mode] = asyncio.run(_drive(server.url, mode, args.seconds, args.concurrency,
                                               args.pipeline, args.visitors))  # fmt: skip
            return out
        finally:
            server.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench durability")
    parser.add_argument("--seconds", type=float, default=3, help="per mode, policy and turn")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pipeline", type=int, default=100)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, help="where Redis writes (default: <data_dir>/bench)")
    args = parser.parse_args(argv)
    base = args.dir or load_settings().data_dir / "bench"
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[float]]] = {
        p: {m: [] for m in ("fsync", *MODES)} for p in APPENDFSYNC
    }
    for _ in range(args.turns):
        for policy in ("no", "everysec", "always"):
            for mode, rate in _turn(base, policy, args).items():
                results[policy][mode].append(rate)
    print(f"segserver bench durability: {args.turns} turns of {args.seconds:g} s per mode and "
          f"policy, in {base.resolve()}; one page_view with an event id per call; "
          f"median of turns")  # fmt: skip
    ms = sorted(t * 1e3 for p in APPENDFSYNC for t in results[p]["fsync"])
    print(f"  this disk: append 100 bytes + fsync, median of turns {statistics.median(ms):.2f} ms "
          f"(turns from {ms[0]:.2f} to {ms[-1]:.2f} ms)")  # fmt: skip
    for mode in MODES:
        label = {"1 caller": "1 caller, 1 event per call",
                 "concurrent": f"{args.concurrency} concurrent callers, 1 event per call",
                 "pipelined": f"pipelines of {args.pipeline} calls"}[mode]  # fmt: skip
        print(f" {label}")
        base_rate = statistics.median(results["everysec"][mode])
        for policy in ("everysec", "always", "no"):
            rate = statistics.median(results[policy][mode])
            default = " (default, baseline)" if policy == "everysec" else ""
            name = f"appendfsync {policy}{default}"
            print(row(name, rate, "events/s", None if policy == "everysec" else base_rate))
    return 0
