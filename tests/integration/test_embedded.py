"""The embedded default: a private redis-server that keeps data across restarts,
respawned when it dies while supervised, and `segserver serve` starting it, running
on through its kill -9 and stopping it."""

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
from tests.faults.procs import TEST_CACHE, ServeProcess, alive, wait_for


def test_restart_keeps_data(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "d") as server, redis.Redis.from_url(server.url) as client:
        client.set("k", "v")
    with EmbeddedRedis(tmp_path / "d") as server, redis.Redis.from_url(server.url) as client:
        assert client.get("k") == b"v"


@pytest.mark.parametrize("policy", ["always", "everysec", "no"])
def test_appendfsync_reaches_redis(tmp_path: Path, policy: str) -> None:
    with EmbeddedRedis(tmp_path, appendfsync=policy) as server, \
            redis.Redis.from_url(server.url, decode_responses=True) as client:  # fmt: skip
        assert client.config_get("appendfsync") == {"appendfsync": policy}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    with pytest.raises(ConfigError, match="appendfsync"):
        EmbeddedRedis(tmp_path, appendfsync="sometimes")


def test_supervised_redis_is_respawned_with_its_data(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, appendfsync="always")
    server.start()
    server.supervise()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.set("k", "v")  # acknowledged after its fsync ("always")
        assert server.process is not None
        first = server.process.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: server.restarts == 1, "the supervisor starting redis-server again")
        assert server.process is not None and server.process.pid != first
        with redis.Redis.from_url(server.url) as client:
            assert client.get("k") == b"v"
        second = server.process.pid
    finally:
        server.stop()
    assert not alive(second)
    assert server.process is None and server.restarts == 1  # stopped means not respawned


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
        while alive(redis_pid):
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
        assert not any(alive(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_serve_answers_again_after_its_embedded_redis_is_killed(tmp_path: Path) -> None:
    """kill -9 of the embedded redis-server under a running server: the server answers
    again by itself, with the data of the append-only file, and its loops resume."""
    serve = ServeProcess(tmp_path, {**TEST_CACHE, "SEGSERVER_REDIS_URL": "",
                                    "SEGSERVER_LOOP_STALE_SECONDS": "2",
                                    "SEGSERVER_EMBEDDED_APPENDFSYNC": "always"})  # fmt: skip
    serve.start()
    try:
        with redis.Redis(unix_socket_path=str(tmp_path / "redis.sock")) as client:
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
        status, site = serve.admin("POST", "/v1/admin/sites", {"id": "s", "name": "S"})
        assert status == 201, site
        key = {"X-Segserver-Key": site["site_key"]}
        event = [{"visitor_id": "v1", "type": "page_view", "event_id": "e1"}]
        assert serve.request("POST", "/v1/events", event, key)[0] == 202
        first = _redis_pid(tmp_path / "redis.sock")
        assert first is not None
        os.kill(first, signal.SIGKILL)

        def answers_on_new_redis() -> bool:
            return serve.request("GET", "/readyz")[0] == 200 and _redis_pid(
                tmp_path / "redis.sock") not in (None, first)  # fmt: skip

        wait_for(answers_on_new_redis, "segserver ready again on a new redis-server", 60)
        assert serve.admin("GET", "/v1/admin/sites/s")[0] == 200  # the AOF kept the site
        status, body = serve.request("POST", "/v1/events", [
            {"visitor_id": "v1", "type": "page_view", "event_id": "e2"}], key)  # fmt: skip
        assert (status, body["stored"]) == (202, 1), body
        _, ready = serve.request("GET", "/readyz")
        assert ready["stale"] == [] and set(ready["loops"]) >= {"expiry", "triggers"}
        assert "embedded redis-server running again" in serve.log.read_text()
    finally:
        assert serve.stop() == 0
    assert not (tmp_path / "redis.sock").exists() or _redis_pid(tmp_path / "redis.sock") is None


def _pid_of(url: str) -> int | None:
    import json

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(json.loads(resp.read())["pid"])
    except OSError:
        return None


def _redis_pid(sock: Path) -> int | None:
    """The pid of the redis-server answering on `sock`; None when none answers."""
    try:
        with redis.Redis(unix_socket_path=str(sock), socket_timeout=1) as client:
            return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError):
        return None


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
