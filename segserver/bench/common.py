"""Shared benchmark plumbing: a private Redis, a server subprocess, reporting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from segserver.storage.embedded import EmbeddedRedis


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process' environment with `overrides`, for a server started as a child
    process (forwarded whole to it, not read here as settings)."""
    return {**os.environ, **overrides}  # noqa: TID251 - handed to a child, not a setting


@contextmanager
def private_redis() -> Iterator[EmbeddedRedis]:
    with tempfile.TemporaryDirectory(prefix="segbench-") as tmp:
        server = EmbeddedRedis(Path(tmp), appendonly=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(
    redis_url: str,
    admin_token: str,
    extra_env: dict[str, str] | None = None,
    args: list[str] | None = None,
    pin_core: int | None = None,
) -> Iterator[str]:
    """`segserver serve` in a subprocess (its own core); yields its base URL."""
    port = free_port()
    env = child_env(
        {
            "SEGSERVER_REDIS_URL": redis_url,
            "SEGSERVER_PORT": str(port),
            "SEGSERVER_ADMIN_TOKEN": admin_token,
            "SEGSERVER_LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
    )
    pin = ["taskset", "-c", str(pin_core)] if pin_core is not None else []
    proc = subprocess.Popen(
        [*pin, sys.executable, "-m", "segserver.cli", "serve", *(args or [])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark server did not start")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


def row(label: str, value: float, unit: str, baseline: float | None = None) -> str:
    ratio = f"  {value / baseline:6.2f}× baseline" if baseline else ""
    return f"  {label:<52} {value:>12,.1f} {unit}{ratio}"
