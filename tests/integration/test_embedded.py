"""The embedded default: a private redis-server that keeps data across restarts,
and `segserver serve` starting and stopping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from segserver.errors import ConfigError
from segserver.storage.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN


def test_restart_keeps_data(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "d") as server, redis.Redis.from_url(server.url) as client:
        client.set("k", "v")
    with EmbeddedRedis(tmp_path / "d") as server, redis.Redis.from_url(server.url) as client:
        assert client.get("k") == b"v"


def test_missing_binary_says_how_to_fix(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, binary=None)
    server.binary = None
    with pytest.raises(ConfigError, match="apt-get install redis-server") as err:
        server.start()
    assert "SEGSERVER_REDIS_URL" in err.value.message


def test_second_server_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as _, pytest.raises(ConfigError, match="already serves"):
        EmbeddedRedis(tmp_path).start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except OSError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_embedded_redis_and_stops_it(
    tmp_path: Path, sig: signal.Signals, data_dir: Path
) -> None:
    port = _free_port()
    env = {**os.environ, "SEGSERVER_DATA_DIR": str(tmp_path), "SEGSERVER_PORT": str(port),
           "SEGSERVER_REDIS_URL": "", "SEGSERVER_ADMIN_TOKEN": ADMIN_TOKEN,
           "SEGSERVER_CACHE_DIR": str(data_dir / "numba-cache")}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segserver.cli", "serve"], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while _get(f"http://127.0.0.1:{port}/readyz") != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        redis_pid = _redis_pid(tmp_path / "redis.sock")
        assert redis_pid is not None
        proc.send_signal(sig)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 10
        while _alive(redis_pid):
            assert time.monotonic() < deadline, "redis-server outlived segserver"
            time.sleep(0.05)
        assert (tmp_path / "appendonlydir").is_dir()  # append-only file on
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_serve_with_two_workers(tmp_path: Path, data_dir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SEGSERVER_DATA_DIR": str(tmp_path), "SEGSERVER_PORT": str(port),
           "SEGSERVER_REDIS_URL": "", "SEGSERVER_ADMIN_TOKEN": ADMIN_TOKEN,
           "SEGSERVER_CACHE_DIR": str(data_dir / "numba-cache")}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "segserver.cli", "serve", "--workers",
                                 "2"], env=env, stdout=out, stderr=out)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        pids: set[int] = set()
        while len(pids) < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"two workers did not answer: {log.read_text()}"
            pid = _pid_of(f"http://127.0.0.1:{port}/healthz")
            if pid:
                pids.add(pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(_alive(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _pid_of(url: str) -> int | None:
    import json

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(json.loads(resp.read())["pid"])
    except OSError:
        return None


def _redis_pid(sock: Path) -> int | None:
    with redis.Redis(unix_socket_path=str(sock)) as client:
        return int(client.info("server")["process_id"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped by its parent) counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_bad_setting_stops_start_up_naming_it(tmp_path: Path) -> None:
    env = {**os.environ, "SEGSERVER_PORT": "eighty", "SEGSERVER_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "segserver.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "SEGSERVER_PORT" in out.stderr
