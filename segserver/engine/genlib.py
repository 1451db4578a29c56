"""Block helpers that the code generated per rule set calls (see `codegen`).

Each fills one float64 or boolean column of a block of profiles (rows `start` ..
`start + cnt - 1` of the caller's block) with exactly what the interpreter's test
computes per profile, so generated code and interpreter agree to the bit. They are
inlined into the generated function (`inline="always"`): no call, no array struct
passed per row.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from segserver.engine import jitcache
from segserver.engine.abi import TAGS_ALL, TAGS_ANY
from segserver.engine.kernels import (
    MAX_DAY,
    MIN_DAY,
    _inline,
    _jit,
    anniversary_in,
    in_sorted,
    mix64,
    window_sum_row,
    year_of,
)
from segserver.profile.schema import WINDOW_DAYS

_BIT63 = np.int64(-(2**63))


@_jit
def window_block(f32b, start, cnt, wi, days, offset, today, sums):  # type: ignore[no-untyped-def]
    """sums[p] = the window sum of row start+p, days (today-offset-days, today-offset].

    The same floats as `window_sum_row` (days added oldest first). Rows whose ring
    holds the whole window (head day >= its last day, the usual case for an active
    visitor) share one slot pattern, so four of them are summed side by side: four
    independent chains of adds instead of one (measured 12.8 against 16.7 ns per
    profile for 30 days; a day-major loop over the block measured 64 ns, it reads
    each profile's ring lines once per day).
    """
    last = today - offset
    first = last - days + 1
    fs = first % WINDOW_DAYS
    end = min(WINDOW_DAYS, fs + days)
    rest = days - (end - fs)
    base = wi + 1
    p = 0
    while p + 4 <= cnt:
        r = start + p
        if (
            _full(f32b[r, wi], first, last)
            and _full(f32b[r + 1, wi], first, last)
            and _full(f32b[r + 2, wi], first, last)
            and _full(f32b[r + 3, wi], first, last)
        ):
            s0 = s1 = s2 = s3 = 0.0
            for j in range(fs, end):
                s0 += np.float64(f32b[r, base + j])
                s1 += np.float64(f32b[r + 1, base + j])
                s2 += np.float64(f32b[r + 2, base + j])
                s3 += np.float64(f32b[r + 3, base + j])
            for j in range(rest):
                s0 += np.float64(f32b[r, base + j])
                s1 += np.float64(f32b[r + 1, base + j])
                s2 += np.float64(f32b[r + 2, base + j])
                s3 += np.float64(f32b[r + 3, base + j])
            sums[p] = s0
            sums[p + 1] = s1
            sums[p + 2] = s2
            sums[p + 3] = s3
        else:
            for q in range(4):
                sums[p + q] = window_sum_row(f32b, r + q, wi, days, offset, today)
        p += 4
    while p < cnt:
        sums[p] = window_sum_row(f32b, start + p, wi, days, offset, today)
        p += 1


@_inline
def _full(head, first, last):  # type: ignore[no-untyped-def]
    """Does a ring with this head day hold every day first .. last (as `window_sum_row`
    bounds it: head - 35 < day <= head)?"""
    if not (head > -1e9 and head < 1e9):
        return False
    h = np.int64(head)
    return h >= last and h - WINDOW_DAYS < first


# The per-test helpers below share one calling convention (the generator emits
# `<name>_block(block, start, cnt, <the test's integers and constants>, k, today, v)`):
# v[p] = the interpreter's outcome of that test for row start+p.


@_jit
def anniversary_block(block, start, cnt, a, days, k, today, v):  # type: ignore[no-untyped-def]
    """`anniversary_within days` of feature a."""
    if today >= MIN_DAY and today < MAX_DAY:
        ty, y0, y1, leap0, leap1 = year_of(today)
        for p in range(cnt):
            match, _ = anniversary_in(block[start + p, a], days, today, ty, y0, y1, leap0, leap1)
            v[p] = match
    else:
        for p in range(cnt):
            v[p] = False


@_jit
def bucket_block(block, start, cnt, a, salt, lo, hi, k, today, v):  # type: ignore[no-untyped-def]
    """lo <= bucket(idhash in feature a, salt) < hi (no match without an idhash)."""
    s = np.uint64(salt)
    for p in range(cnt):
        h = block[start + p, a]
        if not (h >= 0.0 and h < 4294967296.0) or h != math.floor(h):
            v[p] = False
        else:
            bucket = np.float64(mix64((np.uint64(h) << np.uint64(32)) | s) % np.uint64(10000))
            v[p] = lo <= bucket < hi


@_jit
def tags_block(block, start, cnt, a, d, b, c, cmp, k, today, v):  # type: ignore[no-untyped-def]
    """Tag test `cmp` (any, all, none) of slots a .. a+d against codes k[b : b+c]."""
    for p in range(cnt):
        row = start + p
        any_tag = False
        hits = 0
        for i in range(a, a + d):
            t = block[row, i]
            if t == t:
                any_tag = True
                for j in range(b, b + c):
                    if k[j] == t:
                        hits += 1
                        break
        if not any_tag:
            v[p] = False
        elif cmp == TAGS_ANY:
            v[p] = hits > 0
        elif cmp == TAGS_ALL:
            every = True
            for j in range(b, b + c):
                seen = False
                for i in range(a, a + d):
                    if block[row, i] == k[j]:
                        seen = True
                        break
                if not seen:
                    every = False
                    break
            v[p] = every
        else:
            v[p] = hits == 0


@_jit
def tagmask_block(block, start, cnt, a, d, v):  # type: ignore[no-untyped-def]
    """v[p] = the tags of slots a .. a+d of row start+p as bits: bit t for code t in
    0 .. 62, bit 63 for any other present value (0: no tag)."""
    for p in range(cnt):
        mask = np.int64(0)
        for i in range(a, a + d):
            t = block[start + p, i]
            if t == t:
                if t >= 0.0 and t < 63.0 and t == math.floor(t):
                    mask |= 1 << np.int64(t)
                else:
                    mask |= _BIT63
        v[p] = mask


@_jit
def in_block(block, start, cnt, a, b, c, cmp, k, today, v):  # type: ignore[no-untyped-def]
    """Feature a present and in (cmp 0) / not in (cmp 1) the sorted set k[b : b+c]."""
    for p in range(cnt):
        x = block[start + p, a]
        v[p] = x == x and in_sorted(k, b, c, x) != (cmp == 1)


#: How generated code is compiled: no `cache=True` here, the loader attaches the
#: content-addressed cache (`segserver.engine.jitcache`) to the entry point only.
jit = numba.njit(nogil=True, error_model="numpy")


#: Every dispatcher of this module (each with the content-keyed disk cache).
DISPATCHERS = jitcache.attach_all(globals())
