"""`segserver serve | demo | bench` (recompute and export follow with the catalogue)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from segserver.config import Settings, load_settings
from segserver.errors import SegserverError

if TYPE_CHECKING:
    from segserver.storage.embedded import EmbeddedRedis

log = logging.getLogger("segserver")


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(args.config, **overrides)


def _embedded(settings: Settings) -> EmbeddedRedis | None:
    """The private redis-server of the embedded default (None with a Redis URL)."""
    from segserver.storage.embedded import EmbeddedRedis

    if not settings.embedded:
        return None
    return EmbeddedRedis(settings.data_dir, appendfsync=settings.embedded_appendfsync)


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from segserver.http import create_app

    settings = _settings(args, host=args.host, port=args.port)
    generated = not settings.admin_token
    if generated:
        settings = settings.model_copy(update={"admin_token": secrets.token_urlsafe(24)})
        print(
            f"segserver: no admin token configured; this run's token: {settings.admin_token}",
            flush=True,
        )
    embedded = _embedded(settings)
    url = settings.redis_url
    try:
        if embedded is not None:
            url = embedded.start()
            embedded.supervise()  # respawned with back-off if it dies; the AOF keeps the data
            print(f"segserver: embedded Redis at {url} (data in {embedded.data_dir}, "
                  f"appendfsync {embedded.appendfsync})", flush=True)  # fmt: skip
        _warm(settings)
        if args.demo:
            asyncio.run(_demo(settings, url, args.visitors))
        if args.workers > 1:
            return _run_workers(args, settings, url)
        app = create_app(settings, redis_url=url)
        app.on_startup.append(_freeze_heap)  # after every start-up context
        app.on_shutdown.append(_abandon_compiles)
        web.run_app(
            app,
            loop=new_event_loop(settings),
            host=settings.host,
            port=settings.port,
            print=None if args.quiet else _printer(settings, generated or args.demo),
            access_log=None,
            handle_signals=True,
            reuse_port=args.reuse_port,
        )
    finally:
        if embedded is not None:
            embedded.stop()
            print("segserver: embedded Redis stopped", flush=True)
    return 0


def new_event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """The server's loop: uvloop unless `event_loop = "asyncio"` (bench http measures
    both)."""
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _run_workers(args: argparse.Namespace, settings: Settings, url: str) -> int:
    """N server processes sharing the port (SO_REUSEPORT; the kernel spreads the
    connections). Each runs the expiry scheduler and trigger delivery too: their claims
    are atomic in Redis, so every due item is still processed once."""
    import os
    import signal
    import subprocess

    env = {**os.environ, "SEGSERVER_REDIS_URL": url, "SEGSERVER_ADMIN_TOKEN": settings.admin_token,
           "SEGSERVER_HOST": settings.host, "SEGSERVER_PORT": str(settings.port)}  # fmt: skip
    config = ["--config", str(args.config)] if args.config else []
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "segserver.cli", *config, "serve", "--reuse-port", "--quiet"],
            env=env,
        )
        for _ in range(args.workers)
    ]
    print(f"segserver: {args.workers} workers serving on http://{settings.host}:{settings.port} "
          "(Ctrl-C stops)", flush=True)  # fmt: skip
    if not args.quiet:
        print(f"segserver: admin page {admin_url(settings, args.demo)}", flush=True)

    def stop(signum: int, _: object) -> None:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [w.wait() for w in workers]
    return max(codes, default=0)


async def _freeze_heap(_: object) -> None:
    """Everything start-up made (modules, Numba dispatchers, models, services) lives as
    long as the process: move it out of the cyclic collector's reach, so that a full
    collection scans only what was made since. Measured under load (175 K objects
    after start-up): full collections of 95-180 ms every ~1.5 s, the page view's
    worst tail, became ~6 ms. A request's objects are freed by reference counting, but
    its transient peak crossed the default young-generation threshold (700) ~75 times
    a second per 1,000 requests/s; at 10,000 the collector ran 5 times in 8 s instead
    of ~1,100 (GC time ~25 µs → ~1 µs per page view)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def _abandon_compiles(_: object) -> None:
    """SIGTERM: a compile of generated code under way in the worker process is killed,
    not waited for (it takes seconds to minutes on a busy machine; the server had
    outlived its stop signal by more than 20 s)."""
    from segserver.engine import generated

    generated.REGISTRY.abandon()


def _warm(settings: Settings) -> None:
    """Load the rule kernels from the shared on-disk cache, compiling what is missing
    (minutes once per installed version, about a second after; see engine.jitcache)."""
    from segserver import engine
    from segserver.engine import jitcache

    started = time.perf_counter()
    engine.warm(settings.kernel_cache_dir)
    stats = engine.compile_stats()
    print(f"segserver: rule kernels ready in {time.perf_counter() - started:.1f} s "
          f"({stats['loaded']} loaded, {stats['compiled']} compiled; cache "
          f"{jitcache.kernels_dir()})", flush=True)  # fmt: skip


def _warm_cmd(args: argparse.Namespace) -> int:
    from segserver.engine import jitcache

    _warm(_settings(args))
    for path in jitcache.prune():
        print(f"segserver: removed kernels of an older version: {path}", flush=True)
    return 0


def admin_url(settings: Settings, with_token: bool) -> str:
    """The admin page's address; with the token in its fragment (never sent to the
    server, read once by the page and removed from the address bar) when asked."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.port}/admin/"
    return f"{url}#token={settings.admin_token}" if with_token else url


def _printer(settings: Settings, with_token: bool) -> Callable[[str], None]:
    """What `serve` prints once listening: the address, and the admin page's (with the
    token for a demo or a generated token; a configured token is not echoed)."""

    def show(_: str) -> None:
        print(
            f"segserver: serving on http://{settings.host}:{settings.port} (Ctrl-C stops)\n"
            f"segserver: admin page {admin_url(settings, with_token)}",
            flush=True,
        )

    return show


async def _demo(settings: Settings, url: str, visitors: int) -> None:
    from segserver.demo import ensure_demo_site, seed_visitors
    from segserver.wiring import open_services

    async with open_services(settings, url) as services:
        await services.scripts.load_all()
        site = await ensure_demo_site(services)
        from segserver.demo.campaigns import install_demo_campaigns

        await install_demo_campaigns(services, site.id)
        existing = await services.profiles.count(site.id) if visitors else 0
        if visitors and existing < visitors:
            stats = await seed_visitors(services, site.id, visitors - existing, seed=existing)
            print(f"segserver: demo site seeded with {stats.created:,} visitors in "
                  f"{stats.seconds:.1f} s ({stats.rate:,.0f}/s); membership recomputed in "
                  f"{stats.recompute_seconds:.1f} s", flush=True)  # fmt: skip
        print(f"segserver: demo site {site.id!r}, site key {site.site_key}", flush=True)


def _demo_cmd(args: argparse.Namespace) -> int:
    settings = _settings(args)
    embedded = _embedded(settings)
    try:
        url = embedded.start() if embedded is not None else settings.redis_url
        _warm(settings)
        asyncio.run(_demo(settings, url, args.visitors))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


_BENCHES = {
    "events": "segserver.bench.events",
    "profile": "segserver.bench.profile",
    "http": "segserver.bench.http",
    "segments": "segserver.bench.segments",
    "eval": "segserver.bench.eval",
    "durability": "segserver.bench.durability",
    "loops": "segserver.bench.loops",
    "faults": "segserver.bench.faults",
}


def _bench(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(_BENCHES[args.which])
    code: int = module.main(args.rest)
    return code


def _recompute_cmd(args: argparse.Namespace) -> int:
    from segserver.jobs.recompute import RecomputeStats
    from segserver.jobs.spread import recompute_spread
    from segserver.wiring import open_services

    settings = _settings(args)
    embedded = _embedded(settings)

    def bar(done: int, total: int) -> None:
        width = 40
        frac = min(done / total, 1.0) if total else 1.0
        fill = "#" * int(width * frac)
        sys.stderr.write(f"\r[{fill:<{width}}] {100 * frac:5.1f}%  {done:,}/{total:,} visitors")
        sys.stderr.flush()

    def report(stats: RecomputeStats) -> None:
        sys.stderr.write("\n")
        rate = stats.visitors / stats.seconds if stats.seconds else 0.0
        print(f"segserver: recomputed {stats.visitors:,} visitors of {args.site!r} in "
              f"{stats.seconds:.1f} s ({rate:,.0f}/s); {stats.committed:,} committed "
              "(their membership or due instant changed)")  # fmt: skip

    async def run(url: str) -> None:
        async with open_services(settings, url) as services:
            await services.scripts.load_all()
            total = await services.profiles.count(args.site)
            if args.workers > 1:
                at = time.time()
                stats = await asyncio.to_thread(
                    recompute_spread, settings, url, args.site, at, args.workers,
                    lambda done: bar(done, total),
                )  # fmt: skip
            else:
                stats = await services.recomputer.run(args.site, time.time(), "recompute", bar,
                                                      total)  # fmt: skip
            report(stats)

    try:
        url = embedded.start() if embedded is not None else settings.redis_url
        _warm(settings)
        asyncio.run(run(url))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segserver", description=__doc__)
    parser.add_argument("--config", type=Path, help="a TOML settings file")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--demo", action="store_true", help="install the demo site and visitors")
    serve.add_argument("--visitors", type=int, default=1000, help="demo visitors (with --demo)")
    serve.add_argument("--workers", type=int, default=1, help="server processes sharing the port")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    demo = sub.add_parser("demo", help="install the demo site and seed synthetic visitors")
    demo.add_argument("--visitors", type=int, default=1000)
    demo.set_defaults(func=_demo_cmd)
    recompute = sub.add_parser("recompute", help="re-evaluate every visitor of a site")
    recompute.add_argument("--site", required=True)
    recompute.add_argument("--workers", type=int, default=1,
                           help="processes to spread the shards over (default 1)")  # fmt: skip
    recompute.set_defaults(func=_recompute_cmd)
    warm = sub.add_parser(
        "warm", help="compile the rule kernels into the shared on-disk cache (once per version)"
    )
    warm.set_defaults(func=_warm_cmd)
    bench = sub.add_parser("bench", help="benchmarks (ratios against in-run baselines)")
    bench.add_argument("which", choices=sorted(_BENCHES))
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        level = load_settings(args.config).log_level.upper()
    except SegserverError:
        level = "INFO"  # the command reports the bad setting itself
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        code: int = args.func(args)
        return code
    except SegserverError as exc:
        print(f"segserver: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
