"""The rule engine: compile segments to a rule program and evaluate it (see `abi`).

    program = build_program(segments, layout, vocab)     # validates; milliseconds, no JIT
    evaluate(program, features, now, out)                 # one profile → bitset (Numba)
    next_change(program, features, now)                   # when a time test may flip
    evaluate_batch(program, block, now, out, parallel=)   # N profiles → N bitsets
    members(program, out)                                 # bitset → segment ids
    explain(program, features, now)                       # why (pure-Python twin)

`warm(cache_dir)` compiles every kernel signature before traffic (or loads it from
the on-disk cache in `cache_dir`); afterwards nothing compiles in the process.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import types as nt
from numba.core import config as numba_config

from segserver.engine import batch, kernels, reference
from segserver.engine.abi import BLOCK
from segserver.engine.compiler import Program, SegmentDef, build_program, compile_rule

__all__ = [
    "Program",
    "SegmentDef",
    "build_program",
    "compile_rule",
    "evaluate",
    "evaluate_batch",
    "explain",
    "members",
    "next_change",
    "warm",
]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
_eval_single = kernels.eval_single


def evaluate(program: Program, features: F64, now: float, out: U64) -> None:
    """Write the membership bitset of one profile at `now` into `out` (uint64[program.words]).

    `features` is the profile's float64 view (C-contiguous, at least `n_features` long,
    e.g. `np.frombuffer(layout.pad(blob), np.float64)`); `now` is epoch seconds.
    """
    # The hot path of every request: len() and a module-level name are the cheapest
    # checks here (the wrapper measured 0.17 µs over the bare kernel call, 0.10 now).
    if len(features) < program.n_features or len(out) < program.words:
        raise ValueError("evaluate: features shorter than the layout or out too small")
    _eval_single(program.code, program.consts, features, float(now), out)


def next_change(program: Program, features: F64, now: float) -> float:
    """Earliest instant after `now` at which a time condition may flip; math.inf if none."""
    if not program.has_time:
        return math.inf
    if features.shape[0] < program.n_features:
        raise ValueError("next_change: features shorter than the layout")
    return float(kernels.next_change(program.code, program.consts, features, float(now)))


def evaluate_batch(
    program: Program, block: F64, now: float, out: U64, parallel: bool = False
) -> None:
    """Bitsets of every profile (row) of `block` (N × F float64, C-contiguous) into `out`.

    `out` is uint64[N, program.words]. `parallel` spreads slices of the block over a
    thread pool of one thread per core (bulk work off the request path only).
    """
    if block.ndim != 2 or block.shape[1] < program.n_features:
        raise ValueError("evaluate_batch: block must be N × F with F >= the layout's slots")
    if out.shape[0] != block.shape[0] or out.shape[1] < program.words:
        raise ValueError("evaluate_batch: out must be uint64[N, words]")
    n = block.shape[0]
    workers = _threads() if parallel else 1
    if workers <= 1 or n < 16 * BLOCK:  # below ~4 000 profiles threads cost more than they save
        batch.eval_batch(program.code, program.consts, block, float(now), out)
        return
    # Row slices of C-contiguous arrays stay C-contiguous: the same compiled kernel runs
    # on each slice in its own thread, without the GIL.
    chunks = workers * 2
    bounds = [(n * i // chunks) // BLOCK * BLOCK for i in range(chunks)] + [n]
    pool = _pool(workers)
    list(
        pool.map(
            lambda lo_hi: batch.eval_batch(
                program.code,
                program.consts,
                block[lo_hi[0] : lo_hi[1]],
                float(now),
                out[lo_hi[0] : lo_hi[1]],
            ),
            [(lo, hi) for lo, hi in pairwise(bounds) if hi > lo],
        )
    )


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
_CODE = nt.Array(nt.int64, 2, "C")
_CONSTS = nt.Array(nt.float64, 1, "C")
_OUT1 = nt.Array(nt.uint64, 1, "C")
_OUT2 = nt.Array(nt.uint64, 2, "C")

#: Every Numba dispatcher of the engine (warm() re-points their caches).
DISPATCHERS = kernels.DISPATCHERS + batch.DISPATCHERS

#: Every signature the wrappers call: features from a bytes view are read-only.
SIGNATURES: tuple[tuple[Any, tuple[Any, ...]], ...] = (
    (kernels.eval_single, (_CODE, _CONSTS, _C1, nt.float64, _OUT1)),
    (kernels.eval_single, (_CODE, _CONSTS, _C1_RO, nt.float64, _OUT1)),
    (kernels.next_change, (_CODE, _CONSTS, _C1, nt.float64)),
    (kernels.next_change, (_CODE, _CONSTS, _C1_RO, nt.float64)),
    (batch.eval_batch, (_CODE, _CONSTS, _C2, nt.float64, _OUT2)),
    (batch.eval_batch, (_CODE, _CONSTS, _C2_RO, nt.float64, _OUT2)),
)


def warm(cache_dir: Path, *, freeze: bool = False) -> None:
    """Compile every kernel signature, loading from / saving to the Numba cache in `cache_dir`.

    Numba reads NUMBA_CACHE_DIR once, at import; setting `numba.config.CACHE_DIR` at
    run time and re-creating each dispatcher's cache (`enable_caching`) points it at
    `cache_dir` (a data directory chosen by the settings). With `freeze`, dispatchers
    refuse to compile anything afterwards (a call with another type raises TypeError
    instead of stalling the event loop on a JIT compile).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    setattr(numba_config, "CACHE_DIR", str(cache_dir))  # noqa: B010 - untyped module attribute
    for dispatcher in DISPATCHERS:
        dispatcher.enable_caching()
    for dispatcher, signature in SIGNATURES:
        dispatcher.compile(signature)
    if freeze:
        for dispatcher in {d for d, _ in SIGNATURES}:  # the entry points; helpers are
            dispatcher.disable_compile()  # only ever compiled into them
