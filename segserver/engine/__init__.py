"""The rule engine: compile segments to a rule program and evaluate it (see `abi`).

    program = build_program(segments, layout, vocab)     # validates; milliseconds, no JIT
    evaluate(program, features, now, out)                 # one profile → bitset (Numba)
    next_change(program, features, now)                   # when a time test may flip
    evaluate_batch(program, block, now, out, parallel=)   # N profiles → N bitsets
    next_change_batch(program, block, now, out)           # N profiles → N instants
    generate(program)                                     # compile code for bulk work
    members(program, out)                                 # bitset → segment ids
    explain(program, features, now)                       # why (pure-Python twin)

`warm(cache_dir)` compiles every kernel signature before traffic, or loads it from the
on-disk cache (`jitcache`: keyed by the kernels' sources, shared by every data dir and
checkout); afterwards nothing compiles in the process. `generate(program)` compiles code
specialised to one program in a worker process; `evaluate_batch` uses it once loaded.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import types as nt

from segserver.engine import (
    batch,
    generated,
    genlib,
    jitcache,
    kernels,
    reference,
    timing,
    wide,
)
from segserver.engine.abi import BLOCK
from segserver.engine.compiler import Program, SegmentDef, build_program, compile_rule
from segserver.profile import packed

__all__ = [
    "Program",
    "SegmentDef",
    "build_program",
    "compile_rule",
    "evaluate",
    "evaluate_batch",
    "explain",
    "generate",
    "is_generated",
    "members",
    "next_change",
    "next_change_batch",
    "warm",
]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
_eval_single = kernels.eval_single
_eval_wide = wide.eval_wide


def evaluate(program: Program, features: F64, now: float, out: U64) -> None:
    """Write the membership bitset of one profile at `now` into `out` (uint64[program.words]).

    `features` is the profile's float64 view (C-contiguous, at least `n_features` long,
    e.g. `np.frombuffer(layout.pad(blob), np.float64)`); `now` is epoch seconds.
    """
    # The hot path of every request: len() and a module-level name are the cheapest
    # checks here (the wrapper measured 0.17 µs over the bare kernel call, 0.10 now).
    if len(features) < program.n_features or len(out) < program.words:
        raise ValueError("evaluate: features shorter than the layout or out too small")
    t = program.wide
    if t is None:
        _eval_single(program.code, program.consts, features, float(now), out)
    else:  # hundreds of segments: the branch-free kernel (engine/wide.py)
        _eval_wide(program.code, program.consts, t.kind, t.row, t.a, t.k, t.i, t.tag_sets,
                   t.prop, t.specs, features, float(now), out)  # fmt: skip


def next_change(program: Program, features: F64, now: float) -> float:
    """Earliest instant after `now` at which a time condition may flip; math.inf if none."""
    if not program.has_time:
        return math.inf
    if features.shape[0] < program.n_features:
        raise ValueError("next_change: features shorter than the layout")
    ages, annivs, windows = program.time_tests
    return float(
        timing.next_change(
            program.code, program.consts, ages, annivs, windows, features, float(now)
        )
    )


def next_change_batch(program: Program, block: F64, now: float, out: F64) -> None:
    """out[i] = `next_change(program, block[i], now)` for every row of `block` (N × F).

    `block` is float64, C-contiguous, F >= the layout's slots; `out` float64[N]. One
    call into Numba for the whole block (runs on the calling thread, GIL released).
    """
    _check_block("next_change_batch", program, block)
    if out.ndim != 1 or out.shape[0] != block.shape[0]:
        raise ValueError("next_change_batch: out must be float64[N]")
    if not program.has_time:
        out[:] = math.inf
        return
    ages, annivs, windows = program.time_tests
    timing.next_change_batch(
        program.code, program.consts, ages, annivs, windows, block, float(now), out
    )


def evaluate_batch(
    program: Program, block: F64, now: float, out: U64, parallel: bool = False
) -> None:
    """Bitsets of every profile (row) of `block` (N × F float64, C-contiguous) into `out`.

    `out` is uint64[N, >= program.words] (words past the program's are zeroed). Code
    generated for this program (`generate`) runs once it is loaded; until then, and
    for programs never generated, the interpreter does: same bits either way. The
    call never compiles. `parallel` spreads slices of the block over a thread pool of
    one thread per core (bulk work off the request path only); both kernels release
    the GIL.
    """
    _check_block("evaluate_batch", program, block)
    if out.ndim != 2 or out.shape[0] != block.shape[0] or out.shape[1] < program.words:
        raise ValueError("evaluate_batch: out must be uint64[N, words]")
    run = generated.REGISTRY.kernel(program)
    if run is not None and block.flags.writeable:  # compiled for read-only blocks only
        block = block.view()
        block.flags.writeable = False
    code, consts, at = program.code, program.consts, float(now)

    def kernel(rows: F64, bits: U64) -> None:
        if run is not None:
            run(rows, at, bits, consts)
        else:
            batch.eval_batch(code, consts, rows, at, bits)

    n = block.shape[0]
    workers = _threads() if parallel else 1
    if workers <= 1 or n < 16 * BLOCK:  # below ~4 000 profiles threads cost more than they save
        kernel(block, out)
        return
    # Row slices of C-contiguous arrays stay C-contiguous: the same compiled kernel runs
    # on each slice in its own thread, without the GIL.
    chunks = workers * 2
    bounds = [(n * i // chunks) // BLOCK * BLOCK for i in range(chunks)] + [n]
    pool = _pool(workers)
    list(
        pool.map(
            lambda lo_hi: kernel(block[lo_hi[0] : lo_hi[1]], out[lo_hi[0] : lo_hi[1]]),
            [(lo, hi) for lo, hi in pairwise(bounds) if hi > lo],
        )
    )


def generate(program: Program) -> Future[bool]:
    """Compile code specialised to `program` for `evaluate_batch`, off this process.

    Returns at once. The future resolves True once the kernel is loaded in this process
    (from then on `evaluate_batch` uses it), False if it could not be built (the
    interpreter keeps serving). Idempotent per program content: a program with the same
    rows and constants is never compiled twice, in this process or another sharing the
    cache (`jitcache`). Await it from asyncio with `asyncio.wrap_future(...)`.
    """
    return generated.REGISTRY.request(program)


def is_generated(program: Program) -> bool:
    """Does `evaluate_batch` run generated code for `program` now?"""
    return generated.REGISTRY.kernel(program) is not None


def _check_block(name: str, program: Program, block: F64) -> None:
    if block.ndim != 2 or block.shape[1] < program.n_features:
        raise ValueError(f"{name}: block must be N × F with F >= the layout's slots")


_POOL: list[ThreadPoolExecutor] = []


def _threads() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def _pool(workers: int) -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(workers, thread_name_prefix="segserver-batch"))
    return _POOL[0]


def members(program: Program, bits: U64) -> list[str]:
    """Ids of the segments whose bit is set, highest priority first (ties by id)."""
    found = []
    for i, sid in enumerate(program.segment_ids):
        if (int(bits[i >> 6]) >> (i & 63)) & 1:
            found.append((-program.priorities[i], sid))
    return [sid for _, sid in sorted(found)]


def explain(program: Program, features: F64, now: float) -> list[dict[str, Any]]:
    """Per segment: matched, the clause that decided it and the values compared (the twin)."""
    return reference.explain(program, features, float(now))


_C1 = nt.Array(nt.float64, 1, "C")
_C1_RO = nt.Array(nt.float64, 1, "C", readonly=True)
_C2 = nt.Array(nt.float64, 2, "C")
_C2_RO = nt.Array(nt.float64, 2, "C", readonly=True)
_F32_2 = nt.Array(nt.float32, 2, "C")
_F32_2_RO = nt.Array(nt.float32, 2, "C", readonly=True)
_CODE = nt.Array(nt.int64, 2, "C")
_ROWS = nt.Array(nt.int64, 1, "C")
_WIDE = (_ROWS, _ROWS, _ROWS, _C2, _CODE, _CODE, _ROWS, nt.int64)  # kind .. specs
_CONSTS = nt.Array(nt.float64, 1, "C")
_OUT1 = nt.Array(nt.uint64, 1, "C")
_OUT2 = nt.Array(nt.uint64, 2, "C")
_BOOL1 = nt.Array(nt.bool_, 1, "C")
_I = nt.int64
_F = nt.float64

# The stored-profile decoders (segserver.profile.packed) share the engine's content-keyed
# cache and its warm-up: a page view decodes a profile before it evaluates one, and a
# fresh process must not compile them on its first request (~6 s cold here).
for _dispatcher in packed.DISPATCHERS:
    jitcache.attach(_dispatcher)

#: Every Numba dispatcher the engine warms: its kernels and the profile decoders.
DISPATCHERS = (
    kernels.DISPATCHERS + batch.DISPATCHERS + timing.DISPATCHERS + genlib.DISPATCHERS
    + wide.DISPATCHERS + packed.DISPATCHERS
)  # fmt: skip

#: Every signature the wrappers call (features from a bytes view are read-only), and
#: the helpers generated code calls (compiled here once, so a generated kernel's
#: compile in the worker only loads them).
SIGNATURES: tuple[tuple[Any, tuple[Any, ...]], ...] = (
    (kernels.eval_single, (_CODE, _CONSTS, _C1, nt.float64, _OUT1)),
    (kernels.eval_single, (_CODE, _CONSTS, _C1_RO, nt.float64, _OUT1)),
    (wide.eval_wide, (_CODE, _CONSTS, *_WIDE, _C1, nt.float64, _OUT1)),
    (wide.eval_wide, (_CODE, _CONSTS, *_WIDE, _C1_RO, nt.float64, _OUT1)),
    (timing.next_change, (_CODE, _CONSTS, _ROWS, _ROWS, _ROWS, _C1, nt.float64)),
    (timing.next_change, (_CODE, _CONSTS, _ROWS, _ROWS, _ROWS, _C1_RO, nt.float64)),
    (timing.next_change_batch, (_CODE, _CONSTS, _ROWS, _ROWS, _ROWS, _C2, nt.float64, _C1)),
    (timing.next_change_batch, (_CODE, _CONSTS, _ROWS, _ROWS, _ROWS, _C2_RO, nt.float64, _C1)),
    (batch.eval_batch, (_CODE, _CONSTS, _C2, nt.float64, _OUT2)),
    (batch.eval_batch, (_CODE, _CONSTS, _C2_RO, nt.float64, _OUT2)),
    (genlib.window_block, (_F32_2_RO, _I, _I, _I, _I, _I, _I, _C1)),
    (genlib.anniversary_block, (_C2_RO, _I, _I, _I, _I, _CONSTS, _I, _BOOL1)),
    (genlib.bucket_block, (_C2_RO, _I, _I, _I, _I, _F, _F, _CONSTS, _I, _BOOL1)),
    (genlib.tags_block, (_C2_RO, _I, _I, _I, _I, _I, _I, _I, _CONSTS, _I, _BOOL1)),
    (genlib.tagmask_block, (_C2_RO, _I, _I, _I, _I, nt.Array(nt.int64, 1, "C"))),
    (genlib.in_block, (_C2_RO, _I, _I, _I, _I, _I, _I, _CONSTS, _I, _BOOL1)),
    *packed.SIGNATURES,
)


def warm(cache_dir: Path | None = None, *, freeze: bool = False) -> None:
    """Compile every kernel signature, or load it from the disk cache under `cache_dir`.

    `cache_dir` None keeps the default (`jitcache.default_root()`, ~/.cache/segserver,
    shared by every data dir, checkout and test run); another directory starts as a
    copy of the default's compiled kernels (`jitcache.seed`). With a warm cache this loads
    machine code (about a second); a cold one compiles for a minute or more, which
    `segserver warm` (run by scripts/setup) does once per installed version. With
    `freeze`, dispatchers refuse to compile anything afterwards (a call with another
    type raises TypeError instead of stalling the event loop on a JIT compile).
    """
    if cache_dir is not None and Path(cache_dir) != jitcache.root():
        jitcache.seed(Path(cache_dir))
        jitcache.use_root(Path(cache_dir))
    for dispatcher, signature in SIGNATURES:
        dispatcher.compile(signature)
    if freeze:
        for dispatcher in {d for d, _ in SIGNATURES}:  # the entry points; helpers are
            dispatcher.disable_compile()  # only ever compiled into them


def compile_stats() -> dict[str, int]:
    """Signatures of the engine's kernels compiled in this process, and loaded from disk."""
    return {
        "compiled": sum(sum(d._cache_misses.values()) for d in DISPATCHERS),
        "loaded": sum(sum(d._cache_hits.values()) for d in DISPATCHERS),
    }
