"""When may a profile's membership change without an event? (Numba kernels.)

`next_change` is the earliest instant after `now` at which any time test of the
program may flip for one profile (inf: none); `next_change_batch` does the same for
every row of a block in one call (the scheduler and bulk recompute compute it for
thousands of visitors at a time: one Python → Numba call per profile cost more than
the answer). Both follow the pure-Python twin (`reference.next_change`) exactly.
"""

from __future__ import annotations

import math

import numpy as np

from segserver.engine import jitcache
from segserver.engine.abi import OP, OP_AGE, OP_ANNIV, OP_WINDOW, OP_WINDOW_REF, A, B, C, D
from segserver.engine.kernels import _jit, anniversary, leaf, today_of
from segserver.profile.schema import DAY_SECONDS

_INF = math.inf


@_jit
def time_rows(code):  # type: ignore[no-untyped-def]
    """Indexes of the program's rows whose outcome depends on `now`."""
    rows = np.empty(code.shape[0], dtype=np.int64)
    n = 0
    for pc in range(code.shape[0]):
        op = code[pc, OP]
        if op in (OP_AGE, OP_ANNIV, OP_WINDOW, OP_WINDOW_REF):
            rows[n] = pc
            n += 1
    return rows[:n]


@_jit
def _row_change(code, consts, f, f32, now, today, pc, no_bits):  # type: ignore[no-untyped-def]
    op = code[pc, OP]
    if op == OP_AGE:
        x = f[code[pc, A]]
        edge = x + consts[code[pc, B]]
        if x == x and now < edge:
            return edge
        return _INF
    if op == OP_ANNIV:
        return _anniversary_change(f[code[pc, A]], code[pc, C], today)
    return _window_change(code, consts, f, f32, now, pc, today, no_bits)


@_jit
def next_change(code, consts, f, now):  # type: ignore[no-untyped-def]
    """Earliest instant after `now` at which a time test of the program may flip (inf: none)."""
    f32 = f.view(np.float32)
    today = today_of(now)
    no_bits = np.zeros(1, dtype=np.uint64)
    best = _INF
    for pc in range(code.shape[0]):
        if code[pc, OP] in (OP_AGE, OP_ANNIV, OP_WINDOW, OP_WINDOW_REF):
            best = min(best, _row_change(code, consts, f, f32, now, today, pc, no_bits))
    return best


@_jit
def next_change_batch(code, consts, block, now, out):  # type: ignore[no-untyped-def]
    """out[i] = `next_change` of row i of `block` (N × F); the time rows are found once."""
    rows = time_rows(code)
    f32b = block.view(np.float32)
    today = today_of(now)
    no_bits = np.zeros(1, dtype=np.uint64)
    for i in range(block.shape[0]):
        best = _INF
        f = block[i]
        f32 = f32b[i]
        for r in range(rows.shape[0]):
            best = min(best, _row_change(code, consts, f, f32, now, today, rows[r], no_bits))
        out[i] = best


@_jit
def _anniversary_change(x, days, today):  # type: ignore[no-untyped-def]
    v0, cand = anniversary(x, days, today)
    day = today
    v = v0
    for _ in range(4):
        nxt = cand + 1 if v else cand - days + 1
        if nxt <= day:
            return _INF
        v, cand = anniversary(x, days, nxt)
        day = nxt
        if v != v0:
            return np.float64(day * DAY_SECONDS)
    return _INF


@_jit
def _window_change(code, consts, f, f32, now, pc, today, no_bits):  # type: ignore[no-untyped-def]
    span = code[pc, C] + code[pc, D]
    if code[pc, OP] == OP_WINDOW_REF:
        b = code[pc, B]
        span = max(span, np.int64(consts[b + 1]) + np.int64(consts[b + 2]))
    v0 = leaf(code, consts, f, f32, now, today, pc, no_bits)
    for step in range(1, span + 2):
        if leaf(code, consts, f, f32, now, today + step, pc, no_bits) != v0:
            return np.float64((today + step) * DAY_SECONDS)
    return _INF


#: Every dispatcher of this module (each with the content-keyed disk cache).
DISPATCHERS = jitcache.attach_all(globals())
