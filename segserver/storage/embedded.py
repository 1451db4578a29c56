"""The embedded default: a private redis-server on a unix socket in the data
directory, with the append-only file on, stopped with its parent.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from segserver.errors import ConfigError, StorageError

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
_INSTALL_HINT = (
    "redis-server was not found on PATH. Install it (Debian/Ubuntu: "
    "`sudo apt-get install redis-server`; macOS: `brew install redis`), or point "
    "segserver at a running Redis with SEGSERVER_REDIS_URL=redis://host:6379/0."
)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM redis-server if segserver dies without cleaning up."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedRedis:
    """Start with `start()`, stop with `stop()`; `url` is a unix:// URL."""

    def __init__(
        self, data_dir: Path, *, appendonly: bool = True, binary: str | None = None
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / "redis.sock"
        self.appendonly = appendonly
        self.binary = binary or shutil.which("redis-server")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        if self.binary is None:
            raise ConfigError(_INSTALL_HINT)
        if len(str(self.socket)) > _SOCKET_PATH_MAX:
            raise ConfigError(
                f"data_dir: {self.data_dir} is too long for a unix socket path "
                f"(at most {_SOCKET_PATH_MAX - 10} characters); set SEGSERVER_DATA_DIR"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            if self._answers():
                raise ConfigError(
                    f"data_dir: another redis-server already serves {self.socket} "
                    "(is another segserver running with this data directory?)"
                )
            self.socket.unlink()
        args = [
            self.binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--save",
            "",
            "--logfile",
            str(self.data_dir / "redis.log"),
            "--daemonize",
            "no",
        ]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # prctl only; runs before any thread of ours exists
            preexec_fn=_die_with_parent,  # noqa: PLW1509
            # Ctrl-C reaches segserver, which stops Redis itself
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StorageError(
                    f"redis-server exited at start (code {self.process.returncode}); "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self._answers():
                return self.url
            time.sleep(0.01)
        self.stop()
        raise StorageError(f"redis-server did not answer within {timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis fsyncs its append-only file and exits), then SIGKILL."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
