"""The on-disk cache of compiled kernels, keyed by what was compiled, not by where it lies.

Numba's own `cache=True` finds a function's cache by the absolute path of its source
file (`<NUMBA_CACHE_DIR>/<dir name>_<sha1 of the path>/`, or `__pycache__` beside the
file) and trusts it while that one file is unchanged (its mtime and size up to Numba
0.60, a hash of its bytes since 0.61). That misses on every fresh clone, every second
checkout and every installed wheel (another path), and it is wrong when only a helper
in another module changed: `batch.eval_batch` inlines `kernels.compare`, and kernels
bake in `profile.schema` constants such as `WINDOW_DAYS`, yet only `batch.py` is
checked.

Here every engine kernel is cached under `<root>/kernels-<key>/`, where the key hashes
the bytes of every source file the kernels are compiled from (`KERNEL_SOURCES`), the
Numba and Python versions; the same key is the freshness stamp. Any checkout or
installation with the same sources therefore shares one compiled copy, and any change
to them starts a new one. Generated code (`generated`) lives in
`<root>/generated-<key>/<content hash>.py`; its stamp is that content hash.

Numba still checks, per entry, the signature, the CPU (name and features) and the
function's bytecode. A cache that cannot be written (a read-only image) is still read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numba
from numba.core.caching import CompileResultCacheImpl, FunctionCache, NullCache, _CacheLocator

log = logging.getLogger("segserver.engine")

_PACKAGE = Path(__file__).resolve().parents[1]  # .../segserver
#: The files every compiled kernel depends on (helpers are inlined across modules and
#: schema constants are frozen into the machine code).
KERNEL_SOURCES = (
    "engine/abi.py",
    "engine/kernels.py",
    "engine/batch.py",
    "engine/timing.py",
    "engine/genlib.py",
    "engine/wide.py",
    "profile/schema.py",
    # the stored-profile decoders every page view and bulk read runs (engine.warm
    # attaches and compiles them with the engine's kernels)
    "profile/bits.py",
    "profile/packed_read.py",
    "profile/packed_write.py",
    "profile/packed.py",
)


def _digest() -> str:
    h = hashlib.sha256()
    h.update(f"numba {numba.__version__} python {sys.version_info[:2]}{sys.abiflags}".encode())
    for rel in KERNEL_SOURCES:
        h.update(rel.encode() + b"\0")
        h.update((_PACKAGE / rel).read_bytes())
    return h.hexdigest()[:16]


#: Identity of the compiled kernels of this installation (see module doc).
KERNEL_KEY = _digest()


def default_root() -> Path:
    """The per-user cache shared by every data dir, checkout and test run.

    `~/.cache/segserver`; without a usable home directory, a per-user folder in the
    system's temporary directory.
    """
    try:
        return Path.home() / ".cache" / "segserver"
    except RuntimeError:  # no home directory (HOME unset, no passwd entry)
        return Path(tempfile.gettempdir()) / f"segserver-cache-{os.getuid()}"


_root: list[Path] = [default_root()]


def root() -> Path:
    """The cache root in use (`use_root`)."""
    return _root[0]


def kernels_dir() -> Path:
    return root() / f"kernels-{KERNEL_KEY}"


def generated_dir() -> Path:
    return root() / f"generated-{KERNEL_KEY}"


class _Locator(_CacheLocator):
    """Cache path and freshness stamp by content (see module doc)."""

    def __init__(self, py_func: Any, path: Path, stamp: str) -> None:
        self._lineno = py_func.__code__.co_firstlineno
        self._path = path
        self._stamp = stamp

    def ensure_cache_path(self) -> None:
        # Unlike Numba's locators, a directory we cannot write to is still read.
        self._path.mkdir(parents=True, exist_ok=True)

    def get_cache_path(self) -> str:
        return str(self._path)

    def get_source_stamp(self) -> str:
        return self._stamp

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> _Locator | None:
        source = Path(py_file).resolve()
        gen = generated_dir()
        if source.parent == gen:
            return cls(py_func, gen, source.stem)
        if any(source == _PACKAGE / rel for rel in KERNEL_SOURCES):
            return cls(py_func, kernels_dir(), KERNEL_KEY)
        return None


class _Impl(CompileResultCacheImpl):
    _locator_classes = (_Locator,)  # type: ignore[assignment]  # Numba only iterates it


class KernelCache(FunctionCache):
    """Numba's function cache with the content-keyed locator; saving never fails a compile."""

    _impl_class = _Impl

    def save_overload(self, sig: Any, data: Any) -> None:
        try:
            super().save_overload(sig, data)  # type: ignore[no-untyped-call]
        except OSError as exc:  # read-only or full disk: the kernel works, uncached
            log.warning("kernel cache %s not writable (%s); compiled code kept in memory only",
                        self.cache_path, exc)  # fmt: skip


_attached: list[Any] = []


def attach(dispatcher: Any, *, follow_root: bool = True) -> None:
    """Give `dispatcher` the content-keyed cache; with `follow_root`, `use_root` re-points
    it (the engine's kernels; a generated kernel stays with the file it came from)."""
    try:
        dispatcher._cache = KernelCache(dispatcher.py_func)  # type: ignore[no-untyped-call]
    except (OSError, RuntimeError) as exc:  # no usable directory: compile in memory
        log.warning("no kernel cache for %s: %s", dispatcher.py_func.__qualname__, exc)
        dispatcher._cache = NullCache()
    if follow_root and dispatcher not in _attached:
        _attached.append(dispatcher)


def seed(path: Path) -> bool:
    """Start an empty cache root `path` from a copy of the default root's kernels.

    A cache_dir configured explicitly (a test fixture, a service's own directory) then
    serves at once instead of compiling for minutes. True when something was copied.
    """
    source = default_root() / f"kernels-{KERNEL_KEY}"
    target = Path(path) / f"kernels-{KERNEL_KEY}"
    if target.exists() or not source.is_dir() or source == target:
        return False
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        shutil.copytree(source, staging)
        staging.rename(target)  # atomic: readers never see half a copy
    except OSError:  # another process won the race, or the target is read-only
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


def prune(max_age_days: float = 30.0) -> list[Path]:
    """Remove the compiled kernels of other source versions not written for
    `max_age_days` (every edit of a kernel source starts a new directory); return them."""
    current = {kernels_dir().name, generated_dir().name}
    cutoff = time.time() - max_age_days * 86400
    removed = []
    for path in root().glob("*-*"):
        if path.name in current or not path.name.startswith(("kernels-", "generated-")):
            continue
        newest = max((f.stat().st_mtime for f in path.iterdir()), default=path.stat().st_mtime)
        if newest < cutoff:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def use_root(path: Path) -> None:
    """Cache every attached kernel under `path` from now on (settings' cache_dir)."""
    _root[0] = Path(path)
    for dispatcher in _attached:
        attach(dispatcher)


def attach_all(namespace: dict[str, Any]) -> tuple[Any, ...]:
    """Attach the cache to every Numba dispatcher in a module's globals; return them."""
    found = tuple(
        v for v in list(namespace.values()) if isinstance(v, numba.core.dispatcher.Dispatcher)
    )
    for dispatcher in found:
        attach(dispatcher)
    return found


def load_only(dispatcher: Any, signature: tuple[Any, ...]) -> bool:
    """Make `signature` of `dispatcher` callable from the disk cache, never compiling.

    What `Dispatcher.compile` does on a cache hit (numba/core/dispatcher.py), without
    its fallback to compiling: the server process loads generated code that a worker
    process compiled; a miss here means "not ready", not "compile now".
    """
    from numba.core import sigutils
    from numba.core.compiler_lock import global_compiler_lock

    with global_compiler_lock:
        args, _ = sigutils.normalize_signature(signature)  # type: ignore[no-untyped-call]
        if dispatcher.overloads.get(tuple(args)) is not None:
            return True
        cres = dispatcher._cache.load_overload(signature, dispatcher.targetctx)
        if cres is None:
            return False
        dispatcher._cache_hits[signature] += 1
        if not cres.objectmode:
            dispatcher.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
        dispatcher.add_overload(cres)
        return True
