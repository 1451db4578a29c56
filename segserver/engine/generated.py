"""Batch kernels generated per rule program: compiled in a worker process, cached by content.

    future = REGISTRY.request(program)   # returns at once; compiles off this process
    run = REGISTRY.kernel(program)       # the loaded kernel, or None while not ready

Numba compiling holds the GIL for the whole compile (seconds), so a thread would stall
the server's event loop; a worker process (spawned, one at a time, stopped when no job
is left, so it holds no memory while idle) compiles instead and leaves the machine code
in the disk cache (`jitcache`). This process then only loads it (milliseconds, `jitcache.load_only`,
never a compile), in the thread that completes the job's future.

A program is compiled at most once per content hash (`codegen.content_hash`): requests
for a hash already known in this process share one future, and across processes the
worker takes a file lock per hash and finds the cache filled by whoever held it first.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numba import types as nt

from segserver.engine import codegen, jitcache
from segserver.engine.compiler import Program

log = logging.getLogger("segserver.engine")

#: The one signature generated kernels are compiled for: the block is passed read-only
#: (a writable block is viewed read-only first), so one compile serves both.
SIGNATURE = (
    nt.Array(nt.float64, 2, "C", readonly=True),
    nt.float64,
    nt.Array(nt.uint64, 2, "C"),
    nt.Array(nt.float64, 1, "C"),
)


@dataclass(frozen=True, slots=True)
class CompileReport:
    """What the worker did for one content hash: compiled it, or found it in the cache."""

    digest: str
    compiled: bool
    seconds: float


def digest_of(program: Program) -> str:
    return program.digest or codegen.content_hash(program.code, program.consts, program.words)


def _path(directory: Path, digest: str) -> Path:
    return directory / f"g{digest}.py"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _import(path: Path, digest: str) -> Any:
    """The generated module (registered in sys.modules: Numba re-imports it by name)."""
    name = f"_segserver_generated_{digest}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    run = module.run
    jitcache.attach(run, follow_root=False)
    return run


def compile_program(root: str, key: str, digest: str, text: str) -> CompileReport:
    """Write the generated module and compile it into the disk cache (in the worker).

    `key` is the requesting process's `jitcache.KERNEL_KEY`: a worker spawned after the
    engine's sources changed on disk (an upgrade in place) would compile against other
    kernels, into another directory, so it refuses.
    """
    if key != jitcache.KERNEL_KEY:
        raise RuntimeError(
            f"the engine's sources changed on disk since this process started (kernel key "
            f"{key}, now {jitcache.KERNEL_KEY}): restart it to use generated code"
        )
    started = time.perf_counter()
    jitcache.use_root(Path(root))
    directory = jitcache.generated_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = _path(directory, digest)
    with _locked(directory / f"g{digest}.lock"):
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            tmp.replace(path)
        run = _import(path, digest)
        run.compile(SIGNATURE)
        compiled = sum(run._cache_misses.values()) > 0
    return CompileReport(digest, compiled, time.perf_counter() - started)


def load(digest: str) -> Any | None:
    """The compiled kernel of `digest` from the disk cache, or None; never compiles."""
    path = _path(jitcache.generated_dir(), digest)
    if not path.exists():
        return None
    run = _import(path, digest)
    if not jitcache.load_only(run, SIGNATURE):
        return None
    run.disable_compile()  # a call with other types raises instead of compiling here
    return run


@dataclass
class _Entry:
    future: Future[bool]
    run: Any = None
    compile_seconds: float = 0.0  # in the worker: compiling, or finding it in the cache
    load_seconds: float = 0.0  # in this process: loading the machine code


class Registry:
    """Generated kernels of this process, by content hash (see module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._pending = 0  # jobs submitted to the worker and not finished
        self._abandoned = False  # abandon() killed the worker: the process is stopping
        #: Content hashes the worker compiled (not found in the cache), and loaded here.
        self.compiled: list[str] = []
        self.loaded: list[str] = []

    def timings(self, program: Program) -> tuple[float, float]:
        """(seconds the worker spent on `program`'s kernel, seconds loading it here)."""
        entry = self._entries[digest_of(program)]
        return entry.compile_seconds, entry.load_seconds

    def kernel(self, program: Program) -> Any | None:
        """The loaded generated kernel of `program`, or None while it is not ready."""
        entry = self._entries.get(digest_of(program))
        return None if entry is None else entry.run

    def request(self, program: Program) -> Future[bool]:
        """Start compiling `program` off this process unless known; resolves True when
        its kernel is loaded here, False when it could not be built (the interpreter
        keeps serving)."""
        digest = digest_of(program)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                return entry.future
            entry = self._entries[digest] = _Entry(Future())
            entry.future.set_running_or_notify_cancel()
            started = time.perf_counter()
            run = load(digest)  # compiled by an earlier process: milliseconds
            entry.load_seconds = time.perf_counter() - started
            if run is not None:
                self._ready(entry, digest, run)
                return entry.future
            text = codegen.source(program.code, program.consts, program.words)
            job = self._worker().submit(
                compile_program, str(jitcache.root()), jitcache.KERNEL_KEY, digest, text
            )
            self._pending += 1
        job.add_done_callback(lambda done: self._finish(entry, digest, done))
        return entry.future

    def _ready(self, entry: _Entry, digest: str, run: Any) -> None:
        entry.run = run
        self.loaded.append(digest)
        entry.future.set_result(True)

    def _finish(self, entry: _Entry, digest: str, job: Future[CompileReport]) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending == 0 and self._pool is not None:
                # nothing queued: let the worker exit (the next request spawns another)
                self._pool.shutdown(wait=False)
                self._pool = None
        try:
            report = job.result()
            if report.compiled:
                self.compiled.append(digest)
            log.info("generated kernel %s %s in %.1f s", digest,
                     "compiled" if report.compiled else "found", report.seconds)  # fmt: skip
            entry.compile_seconds = report.seconds
            started = time.perf_counter()
            run = load(digest)
            entry.load_seconds = time.perf_counter() - started
        except Exception as exc:  # a failed compile must not break bulk work: interpret
            if self._abandoned:
                log.info("generated kernel %s: compile abandoned (stopping)", digest)
            else:
                log.warning("generated kernel %s failed: %r; the interpreter serves", digest,
                            exc)  # fmt: skip
            run = None
        if run is None:
            entry.future.set_result(False)
        else:
            self._ready(entry, digest, run)

    def _worker(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: forking a process with threads (the server's) is unsafe
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def abandon(self) -> None:
        """Stop the worker at once, killing a compile under way (a stopping server must
        not wait up to minutes for it; the next process compiles it again). Its
        requests resolve False: the interpreter serves whatever still runs."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._abandoned = True
        if pool is None:
            return
        # ProcessPoolExecutor has no public way to stop a running task: terminate its
        # worker (the disk cache is written by temporary file and rename, never torn)
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the worker (waiting for a compile under way; queued ones are cancelled)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


#: The process-wide registry used by `segserver.engine.evaluate_batch`.
REGISTRY = Registry()
