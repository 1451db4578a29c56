"""Real processes to break, for the fault suite and `segserver bench faults`: a
redis-server (killed with -9, frozen with SIGSTOP, stopped, started again on the same
data), a local Redis Cluster of 3 primaries and 3 replicas (a primary killed, its
replica promoted), and `segserver serve` as a subprocess on a free port (killed with
-9 or stopped with SIGTERM).

Nothing here sleeps for a fixed time: every wait polls a condition until a
generous deadline and fails naming what did not happen.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segserver.bench.common import child_env
from segserver.storage.nodes import NODE_ERRORS, node_client

REPO = Path(__file__).resolve().parents[2]  # a source checkout (the serve's working dir)


def wait_for(check: Callable[[], object], what: str, timeout: float = 30.0) -> Any:
    """Poll `check` until it returns something true (returned) or `timeout` passes
    (AssertionError naming `what`). Redis errors while polling count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except NODE_ERRORS:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s: {what}")
        time.sleep(0.02)


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, *, bus: bool = False) -> list[int]:
    """`n` free TCP ports on 127.0.0.1; with `bus`, their cluster bus ports (+10000)
    are free too (a node's port must then be at most 55535)."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20000, 45000)
        if port not in ports and _is_free(port) and (not bus or _is_free(port + 10000)):
            ports.append(port)
    return ports


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class RedisNode:
    """One redis-server on 127.0.0.1:`port` with its data in `directory` (append-only
    file on unless told otherwise); `start()` again after `kill()` or `stop()` brings
    back what the append-only file kept."""

    def __init__(self, directory: Path, port: int, *, appendfsync: str = "everysec",
                 appendonly: bool = True, extra: list[str] | None = None) -> None:  # fmt: skip
        binary = shutil.which("redis-server")
        assert binary, "redis-server is installed by scripts/setup"
        self.binary = binary
        self.directory = directory
        self.port = port
        self.args = [
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes" if appendonly else "no", "--appendfsync", appendfsync,
            "--save", "", "--logfile", str(directory / "redis.log"), *(extra or []),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not running"
        return self.process.pid

    def client(self, **kwargs: Any) -> Any:
        return node_client(self.port, **kwargs)

    def start(self, timeout: float = 20.0) -> RedisNode:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = subprocess.Popen(
            [self.binary, *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, f"redis-server on port {self.port} answering", timeout)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"redis-server exited: see {self.directory}"
        with self.client(socket_connect_timeout=0.5) as c:
            return bool(c.ping())

    def kill(self) -> None:
        """SIGKILL: no fsync, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen one cannot exit
            self.process.terminate()
            self.process.wait(20)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung node)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


class LocalCluster:
    """A Redis Cluster on 127.0.0.1: `masters` primaries with `replicas` replicas
    each, failing over after `node_timeout_ms` without a primary."""

    def __init__(self, directory: Path, *, masters: int = 3, replicas: int = 1,
                 node_timeout_ms: int = 1000) -> None:  # fmt: skip
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is installed with redis-server by scripts/setup"
        self.cli = cli
        self.masters = masters
        self.replicas = replicas
        ports = free_ports(masters * (1 + replicas), bus=True)
        # replicas sync at once (the default waits 5 s for more of them): a replica that
        # never synced cannot be promoted
        extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms),
                 "--cluster-require-full-coverage", "no",
                 "--repl-diskless-sync-delay", "0"]  # fmt: skip
        self.nodes = [
            RedisNode(directory / str(p), p, extra=[
                *extra, "--cluster-config-file", str(directory / str(p) / "nodes.conf")])
            for p in ports
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> LocalCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [self.cli, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        self.wait_healthy(timeout)
        return self

    def url(self, seeds: int = 1) -> str:
        """A segserver cluster URL naming the first `seeds` nodes."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:seeds])

    def roles(self) -> dict[int, str]:
        """port → "master" or "slave" (as the live nodes see themselves)."""
        out = {}
        for node in self.live():
            with node.client() as c:
                out[node.port] = str(c.execute_command("ROLE")[0].decode())
        return out

    def live(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def master_ports(self) -> list[int]:
        return sorted(p for p, role in self.roles().items() if role == "master")

    def node(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every live node says the cluster is ok, `masters` primaries serve slots and
        every live replica is in sync with its primary (so it can be promoted)."""

        def healthy() -> bool:
            for node in self.live():
                with node.client(decode_responses=True) as c:
                    if c.cluster("info")["cluster_state"] != "ok":
                        return False
                    info = c.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            return len(self.master_ports()) == self.masters

        wait_for(healthy, "the cluster to be ok with every slot served", timeout)

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Every live replica has received what its primary held when this was called
        (replication is asynchronous: a primary killed just after a write can take that
        write with it, and the promoted replica never had it)."""
        targets: dict[int, int] = {}
        for node in self.live():
            with node.client() as c:
                info = c.info("replication")
                if info["role"] == "master":
                    targets[node.port] = int(info["master_repl_offset"])

        def caught_up() -> bool:
            for port, offset in targets.items():
                with self.node(port).client() as c:
                    info = c.info("replication")
                    replicas = [
                        v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()
                    ]
                    if len(replicas) < self.replicas or any(
                        int(r["offset"]) < offset for r in replicas
                    ):
                        return False
            return True

        wait_for(caught_up, "every replica caught up with its primary", timeout)

    def kill_master(self, port: int | None = None) -> int:
        """SIGKILL a primary (the first one by default); its port."""
        port = port if port is not None else self.master_ports()[0]
        self.node(port).kill()
        return port

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class ServeProcess:
    """`segserver serve` in a subprocess on a free port, with `env` on top of this
    environment (its output in `log`)."""

    def __init__(self, directory: Path, env: Mapping[str, str], *,
                 admin_token: str = "faults-admin-token-0123456789abcdef",
                 args: list[str] | None = None, port: int | None = None) -> None:  # fmt: skip
        self.port = port or free_ports(1)[0]
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin_token = admin_token
        self.log = directory / f"serve-{self.port}.log"
        self.env = child_env({
            "SEGSERVER_PORT": str(self.port), "SEGSERVER_ADMIN_TOKEN": admin_token,
            "SEGSERVER_DATA_DIR": str(directory),
            **env,
        })  # fmt: skip
        self.args = args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self, timeout: float = 90.0) -> ServeProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "segserver.cli", "serve", *self.args],
                env=self.env, stdout=out, stderr=out, cwd=REPO,
            )  # fmt: skip
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            return self.request("GET", "/readyz")[0] == 200

        wait_for(ready, f"segserver on port {self.port} ready", timeout)

    def request(self, method: str, path: str, body: Any = None,
                headers: Mapping[str, str] | None = None, timeout: float = 5.0,
                ) -> tuple[int, Any]:  # fmt: skip
        """(status, JSON body or None); status 0 when nothing answered."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return int(resp.status), _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except OSError:
            return 0, None

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request(method, path, body, {"Authorization": f"Bearer {self.admin_token}"})

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
