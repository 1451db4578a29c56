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
import numpy.typing as npt

from segserver.engine import abi, jitcache
from segserver.engine.abi import (
    BETWEEN,
    CMP,
    GE,
    GT,
    LE,
    LT,
    OP,
    OP_WINDOW_REF,
    A,
    B,
    C,
    D,
)
from segserver.engine.batch import window_specs
from segserver.engine.kernels import _inline, _jit, anniversary, compare, today_of, window_sum
from segserver.profile.schema import DAY_SECONDS, WINDOW_DAYS

_INF = math.inf


#: Constants that define a time test's next change, per opcode (see `abi`).
_TIME_CONSTS = {abi.OP_AGE: 1, abi.OP_ANNIV: 0, abi.OP_WINDOW: 3, abi.OP_WINDOW_REF: 6}


def time_tests(
    code: npt.NDArray[np.int64], consts: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], ...]:
    """(age rows, anniversary rows, window rows), one row per distinct test: the rows
    `next_change` visits (`Program.time_tests`; pure Python, at build time)."""
    seen: set[tuple[object, ...]] = set()
    kinds: dict[int, list[int]] = {abi.OP_AGE: [], abi.OP_ANNIV: [], abi.OP_WINDOW: []}
    for pc, row in enumerate(code.tolist()):
        op = row[abi.OP]
        if op not in _TIME_CONSTS:
            continue
        b = row[abi.B]
        # an age test changes at x + seconds whether it is `within` or `older_than`
        cmp = -1 if op == abi.OP_AGE else row[abi.CMP]
        key = (op, cmp, row[abi.A], row[abi.C], row[abi.D], *consts[b : b + _TIME_CONSTS[op]])
        if key not in seen:
            seen.add(key)
            kinds[abi.OP_WINDOW if op == abi.OP_WINDOW_REF else op].append(pc)
    return tuple(np.array(rows, dtype=np.int64) for rows in kinds.values())


#: Days ahead that any window test can need: its span (days + offset <= 35) + 2.
AHEAD = WINDOW_DAYS + 2

# The per-row helpers are inlined and each kind of time test runs in its own loop: a
# real call passes each of their arrays as a struct with reference counting, and one
# loop over mixed rows branches on every row (measured: 35 ns per `within` row, 3 ns).


@_inline
def _profile_change(code, consts, f, f32, now, today, ages, annivs, windows, sums, nans, done):  # type: ignore[no-untyped-def]
    best = _INF
    for j in range(ages.shape[0]):
        pc = ages[j]
        x = f[code[pc, A]]
        edge = x + consts[code[pc, B]]
        if x == x and now < edge < best:
            best = edge
    for j in range(annivs.shape[0]):
        pc = annivs[j]
        best = min(best, _anniversary_change(f[code[pc, A]], code[pc, C], today))
    done[:] = False
    for j in range(windows.shape[0]):
        best = min(best, _window_change(code, consts, f32, windows[j], today, sums, nans, done))
    return best


@_jit
def next_change(code, consts, ages, annivs, windows, f, now):  # type: ignore[no-untyped-def]
    """Earliest instant after `now` at which a time test of the program may flip (inf: none).

    `ages`, `annivs`, `windows`: the rows of the program's distinct time tests by kind
    (`Program.time_tests`).
    """
    specs = max(window_specs(code, consts), 1)
    sums = np.empty((specs, 3, AHEAD))
    nans = np.zeros(specs, dtype=np.bool_)
    done = np.zeros(specs, dtype=np.bool_)
    f32 = f.view(np.float32)
    return _profile_change(
        code, consts, f, f32, now, today_of(now), ages, annivs, windows, sums, nans, done
    )


@_jit
def next_change_batch(code, consts, ages, annivs, windows, block, now, out):  # type: ignore[no-untyped-def]
    """out[i] = `next_change` of row i of `block` (N × F), one call for the block."""
    specs = max(window_specs(code, consts), 1)
    sums = np.empty((specs, 3, AHEAD))
    nans = np.zeros(specs, dtype=np.bool_)
    done = np.zeros(specs, dtype=np.bool_)
    f32b = block.view(np.float32)
    today = today_of(now)
    for i in range(block.shape[0]):
        out[i] = _profile_change(
            code, consts, block[i], f32b[i], now, today, ages, annivs, windows, sums, nans, done
        )


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


@_inline
def _window_change(code, consts, f32, pc, today, sums, nans, done):  # type: ignore[no-untyped-def]
    """First midnight (up to the window's span + 1 days ahead) at which the window test
    of row `pc` gives another outcome than today; inf if none.

    The window sums of today and the days ahead are computed once per distinct window
    of the program (its spec number) and profile: `sums[spec]`, `done[spec]`.
    """
    span = code[pc, C] + code[pc, D]
    ref = code[pc, OP] == OP_WINDOW_REF
    b = code[pc, B]
    if ref:
        span = max(span, np.int64(consts[b + 1]) + np.int64(consts[b + 2]))
        left = _sums(
            f32, code[pc, A], code[pc, C], code[pc, D], today, sums, nans, done, consts[b + 4]
        )
        right = _sums(
            f32,
            np.int64(consts[b]),
            np.int64(consts[b + 1]),
            np.int64(consts[b + 2]),
            today,
            sums,
            nans,
            done,
            consts[b + 5],
        )
    else:
        left = _sums(
            f32, code[pc, A], code[pc, C], code[pc, D], today, sums, nans, done, consts[b + 2]
        )
        right = left
    cmp = code[pc, CMP]
    last = span + 1
    if not ref and cmp in (GT, GE, LT, LE) and not nans[left]:
        return _threshold_change(sums, left, cmp, consts[b], last, today)
    v0 = False
    for step in range(last + 1):
        if ref:
            v = compare(sums[left, 0, step], cmp, consts[b + 3] * sums[right, 0, step], 0.0)
        else:
            k1 = consts[b + 1] if cmp == BETWEEN else 0.0
            v = compare(sums[left, 0, step], cmp, consts[b], k1)
        if step == 0:
            v0 = v
        elif v != v0:
            return np.float64((today + step) * DAY_SECONDS)
    return _INF


@_inline
def _threshold_change(sums, spec, cmp, k, last, today):  # type: ignore[no-untyped-def]
    """`_window_change` of a one-sided comparison: the first step whose sum crosses `k`,
    found by binary search over the running minimum (a test that holds and stops
    holding once a sum drops below k) or maximum of the sums ahead (measured: 46 → ~6 µs
    of next_change for 1 000 generated segments, most of them window tests)."""
    x = sums[spec, 0, 0]
    holds = compare(x, cmp, k, 0.0)
    # Which way the sum must move for the outcome to change, and whether touching k
    # already changes it: e.g. GE holding stops at the first sum < k.
    above = cmp in (GE, GT)  # holds for large sums
    down = holds if above else not holds
    strict = (cmp == GE) == holds if above else (cmp == LE) == holds
    track = 1 if down else 2  # running minimum or maximum
    lo = 1
    hi = last + 1
    while lo < hi:  # first step in 1 .. last whose running extreme crosses k
        mid = (lo + hi) >> 1
        m = sums[spec, track, mid]
        crossed = (m < k if strict else m <= k) if down else (m > k if strict else m >= k)
        if crossed:
            hi = mid
        else:
            lo = mid + 1
    if lo > last:
        return _INF
    return np.float64((today + lo) * DAY_SECONDS)


@_inline
def _sums(f32, wi, days, offset, today, sums, nans, done, spec):  # type: ignore[no-untyped-def]
    """Fill sums[spec] once per profile: [0] the window sums of today and the days ahead,
    [1] their running minimum from day 1 on, [2] their running maximum."""
    at = np.int64(spec)
    if not done[at]:
        window_sums_ahead(f32, wi, days, offset, today, sums[at, 0])
        nan = False
        lo = _INF
        hi = -_INF
        for step in range(1, sums.shape[2]):
            x = sums[at, 0, step]
            if x != x:
                nan = True
            lo = min(lo, x)
            hi = max(hi, x)
            sums[at, 1, step] = lo
            sums[at, 2, step] = hi
        nans[at] = nan or sums[at, 0, 0] != sums[at, 0, 0]
        done[at] = True
    return at


@_jit
def window_sums_ahead(f32, wi, days, offset, today, out):  # type: ignore[no-untyped-def]
    """out[k] = `window_sum(f32, wi, days, offset, today + k)`, the same floats.

    When every value of the ring is a whole number below 2**31 (counts: the usual
    case), every partial sum is an exact integer in float64, so any order of adding
    gives the same float as the oldest-first sum: one pass of running sums answers all
    days (measured: 22 µs → ~1 µs of next_change for 100 generated segments). Otherwise
    each day is summed as `window_sum` does.
    """
    head = f32[wi]
    if not (head > -1e9 and head < 1e9):
        out[:] = 0.0
        return
    h = np.int64(head)
    exact = True
    for j in range(WINDOW_DAYS):
        x = f32[wi + 1 + j]
        if not (x == np.floor(x) and abs(x) < 2147483648.0):
            exact = False
            break
    if not exact:
        for k in range(out.shape[0]):
            out[k] = window_sum(f32, wi, days, offset, today + k)
        return
    oldest = h - WINDOW_DAYS + 1
    running = np.empty(WINDOW_DAYS + 1)  # running[i] = sum of ring days oldest .. oldest+i-1
    running[0] = 0.0
    for i in range(WINDOW_DAYS):
        running[i + 1] = running[i] + np.float64(f32[wi + 1 + (oldest + i) % WINDOW_DAYS])
    for k in range(out.shape[0]):
        last = today + k - offset
        lo = max(last - days + 1, oldest)
        hi = min(last, h)
        out[k] = running[hi - oldest + 1] - running[lo - oldest] if hi >= lo else 0.0


#: Every dispatcher of this module (each with the content-keyed disk cache).
DISPATCHERS = jitcache.attach_all(globals())
