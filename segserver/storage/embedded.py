"""The embedded default: a private redis-server on a unix socket in the data
directory, with the append-only file on, stopped with its parent, and respawned
(with back-off) when it dies while supervised.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from segserver.errors import ConfigError, SegserverError, StorageError

log = logging.getLogger("segserver.embedded")
APPENDFSYNC = ("always", "everysec", "no")
# Respawn delays: from 0.1 s, doubling up to 5 s while it keeps dying; a server that
# ran for 30 s before dying starts the sequence again at 0.1 s.
RESPAWN_MIN = 0.1
RESPAWN_MAX = 5.0
RESPAWN_HEALTHY = 30.0

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
_INSTALL_HINT = (
    "redis-server was not found on PATH. Install it (Debian/Ubuntu: "
    "`sudo apt-get install redis-server`; macOS: `brew install redis`), or point "
    "segserver at a running Redis with SEGSERVER_REDIS_URL=redis://host:6379/0."
)


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL("libc.so.6", use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


# Resolved here, once: the child of a process with threads (the supervisor, the lag
# probe) must not dlopen between fork and exec (the loader's lock may be held).
_PRCTL = _load_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM redis-server when the thread that started it ends: the
    main thread (segserver died without cleaning up) or the supervisor's thread,
    which ends only with `stop()`."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    """Start with `start()`, stop with `stop()`; `url` is a unix:// URL. `supervise()`
    respawns it whenever it dies until `stop()`; the append-only file (fsync policy
    `appendfsync`) brings the data back."""

    def __init__(
        self, data_dir: Path, *, appendonly: bool = True, appendfsync: str = "everysec",
        binary: str | None = None,
    ) -> None:  # fmt: skip
        if appendfsync not in APPENDFSYNC:
            raise ConfigError(f"appendfsync: must be one of {', '.join(APPENDFSYNC)}")
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / "redis.sock"
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.binary = binary or shutil.which("redis-server")
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0  # respawns by the supervisor
        self._lock = threading.Lock()  # start, respawn and stop exclude each other
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        """Start redis-server and wait until it answers; its unix:// URL."""
        with self._lock:
            self._stopping.clear()
            return self._spawn(timeout)

    def _spawn(self, timeout: float) -> str:
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
            "--appendfsync",
            self.appendfsync,
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
            # one resolved prctl call: safe between fork and exec with threads around
            preexec_fn=_die_with_parent,  # noqa: PLW1509
            # Ctrl-C reaches segserver, which stops Redis itself
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise StorageError(
                    f"redis-server exited at start (code {code}); see {self.data_dir / 'redis.log'}"
                )
            if self._answers():
                return self.url
            time.sleep(0.01)
        self.process.kill()
        self.process.wait()
        self.process = None
        raise StorageError(f"redis-server did not answer within {timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            # one attempt: redis-py 8 retries a refused connect 10 times with back-off
            # by default (3.4 s measured), which delayed every respawn by that much
            with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5,
                             retry=Retry(NoBackoff(), 0)) as client:  # fmt: skip
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def supervise(self) -> None:
        """Respawn redis-server whenever it exits, until `stop()`. A thread waits on the
        process: it works the same under any event loop and in the parent of
        `serve --workers N`, and a respawn blocks no request."""
        if self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch, name="segserver-embedded-redis",
                                         daemon=True)  # fmt: skip
        self._watcher.start()

    def _watch(self) -> None:
        delay = RESPAWN_MIN
        while not self._stopping.is_set():
            proc = self.process
            if proc is None:
                if self._stopping.wait(delay):
                    return
            else:
                started = time.monotonic()
                code = proc.wait()
                if self._stopping.is_set():
                    return
                if time.monotonic() - started > RESPAWN_HEALTHY:
                    delay = RESPAWN_MIN
                log.warning("embedded redis-server (pid %d) exited with code %s; starting it "
                            "again in %.1f s", proc.pid, code, delay)  # fmt: skip
                if self._stopping.wait(delay):
                    return
            delay = min(delay * 2, RESPAWN_MAX)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn(10.0)
                except SegserverError as exc:
                    log.warning("embedded redis-server did not start again: %s", exc.message)
                    continue
                except Exception:  # e.g. OSError of fork: this thread must go on
                    log.exception("embedded redis-server did not start again")
                    continue
                self.restarts += 1
            log.warning("embedded redis-server running again (pid %d, restart %d)",
                        self.process.pid if self.process else -1, self.restarts)  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising, then SIGTERM (Redis fsyncs its append-only file and
        exits), SIGKILL after `timeout` seconds."""
        self._stopping.set()
        with self._lock:
            proc, self.process = self.process, None
        watcher, self._watcher = self._watcher, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
