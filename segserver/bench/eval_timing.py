"""Timing helpers of `segserver bench eval`: CPU time per call, cold starts, compiles.

Times are the calling thread's CPU time (`time.thread_time`), best of five runs: on a
shared 2-core machine wall time mostly measures the neighbours. Cold starts are wall
time (what a user waits for), each in a fresh process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from segserver.bench.common import child_env, free_port


def cpu_per_call(fn: Callable[[], object], budget: float = 0.3) -> float:
    """CPU seconds per call of fn: the best of 5 runs, each sized to take ~budget/5 s."""
    fn()
    calls = 1
    while True:
        t = time.thread_time()
        for _ in range(calls):
            fn()
        spent = time.thread_time() - t
        if spent > budget / 5 or calls > 1e7:
            break
        calls *= 4
    best = spent / calls
    for _ in range(4):
        t = time.thread_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.thread_time() - t) / calls)
    return best


def cycle(items: Sequence[Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def nxt() -> Any:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return nxt


_WARM = (
    "import time; t = time.perf_counter(); from segserver import engine; engine.warm(); "
    "s = engine.compile_stats(); print(time.perf_counter() - t, s['compiled'], s['loaded'])"
)


def kernels_ready() -> tuple[float, int, int]:
    """(seconds, compiled, loaded): a fresh process imports the engine and warms it from
    the shared cache (the start-up part that Numba decides)."""
    out = subprocess.run(
        [sys.executable, "-c", _WARM], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def serve_ready(timeout: float = 120.0) -> float:
    """Seconds from `segserver serve` on a fresh, empty data dir (embedded Redis) to
    /readyz answering 200."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="segbench-fresh-") as tmp:
        env = child_env({"SEGSERVER_DATA_DIR": tmp, "SEGSERVER_REDIS_URL": "",
                         "SEGSERVER_PORT": str(port), "SEGSERVER_ADMIN_TOKEN": "bench",
                         "SEGSERVER_LOG_LEVEL": "warning"})  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "segserver.cli", "serve", "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                        if r.status == 200:
                            return time.perf_counter() - started
                except (urllib.error.URLError, OSError):
                    pass
                if proc.poll() is not None or time.perf_counter() - started > timeout:
                    raise RuntimeError("segserver serve did not become ready")
                time.sleep(0.02)
        finally:
            proc.terminate()
            proc.wait(30)


class FreshGeneratedCache:
    """A temporary kernel cache root (seeded with the compiled interpreter kernels), so
    the generated code of the bench's programs is compiled from scratch every run."""

    def __enter__(self) -> FreshGeneratedCache:
        from segserver.engine import jitcache

        self._previous = jitcache.root()
        self.path = Path(tempfile.mkdtemp(prefix="segbench-gen-"))
        jitcache.seed(self.path)
        jitcache.use_root(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        from segserver.engine import generated, jitcache

        generated.REGISTRY.shutdown()
        jitcache.use_root(self._previous)
        shutil.rmtree(self.path, ignore_errors=True)
