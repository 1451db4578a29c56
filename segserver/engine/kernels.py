"""The Numba kernels: one fixed interpreter of the rule-program ABI (see `abi`).

Plain loops over arrays, writing into the caller's `out`; no dicts, strings,
exceptions or I/O, and total on any profile (a missing or odd value is "no match").
Validation and dispatch live in `segserver.engine` (the Python wrappers).

* `eval_single`: one profile, following JT/JF jumps (short-circuit, no scratch memory).
* the batch kernel lives in `segserver.engine.batch`, `next_change` in
  `segserver.engine.timing`; both share these helpers.

Compiled lazily and cached on disk by content (`segserver.engine.jitcache`);
`segserver.engine.warm` compiles every signature up front.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from segserver.engine import jitcache
from segserver.engine.abi import (
    BETWEEN,
    CMP,
    EQ,
    GE,
    GT,
    JF,
    JT,
    LE,
    LT,
    NE,
    OP,
    OP_AGE,
    OP_ANNIV,
    OP_BUCKET,
    OP_CMP,
    OP_CONST,
    OP_EXISTS,
    OP_IN,
    OP_RATIO,
    OP_REF,
    OP_SEGMENT,
    OP_SET,
    OP_TAGS,
    OP_WINDOW,
    OP_WINDOW_REF,
    TAGS_ALL,
    TAGS_ANY,
    A,
    B,
    C,
    D,
)
from segserver.profile.schema import DAY_SECONDS, WINDOW_DAYS

# Not `cache=True`: `jitcache.attach` gives every dispatcher a cache keyed by content.
_jit = numba.njit(nogil=True, error_model="numpy")
# Small helpers are inlined at Numba IR level: a real call passes each array as a struct
# and increments/decrements its reference count (measured: ~25 ns per test row).
_inline = numba.njit(nogil=True, error_model="numpy", inline="always")
_ONE = np.uint64(1)
_INF = math.inf
MIN_INSTANT, MAX_INSTANT = -62135596800.0, 253402300800.0
MIN_DAY, MAX_DAY = -719162, 2932896  # 0001-01-01 and 9999-12-31, in epoch days


@_inline
def today_of(now):  # type: ignore[no-untyped-def]
    if not abs(now) < 1e15:
        return 0
    return np.int64(math.floor(now / DAY_SECONDS))


@_inline
def compare(x, cmp, k0, k1):  # type: ignore[no-untyped-def]
    if cmp == GT:
        return x > k0
    if cmp == GE:
        return x >= k0
    if cmp == LT:
        return x < k0
    if cmp == LE:
        return x <= k0
    if cmp == EQ:
        return x == k0
    if cmp == NE:
        return x != k0 and x == x
    if cmp == BETWEEN:
        return k0 <= x <= k1
    return False


@_jit
def civil_from_days(z):  # type: ignore[no-untyped-def]
    """(year, month, day) of an epoch day (H. Hinnant's algorithm)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d


@_jit
def days_from_civil(y, m, d):  # type: ignore[no-untyped-def]
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


#: Days before each month in a common year.
_MONTH_START = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


@_inline
def _is_leap(y):  # type: ignore[no-untyped-def]
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


@_jit
def year_of(today):  # type: ignore[no-untyped-def]
    """(year, first day of the year, of the next, leap?, next leap?) of epoch day `today`."""
    ty, _, _ = civil_from_days(today)
    return (
        ty,
        days_from_civil(ty, 1, 1),
        days_from_civil(ty + 1, 1, 1),
        _is_leap(ty),
        _is_leap(ty + 1),
    )


@_inline
def anniversary_in(x, days, today, ty, y0, y1, leap0, leap1):  # type: ignore[no-untyped-def]
    """`anniversary` with today's year (`year_of(today)`) worked out once by the caller."""
    if not (x >= MIN_INSTANT and x < MAX_INSTANT) or not (today >= MIN_DAY and today < MAX_DAY):
        return False, today
    if ty >= 9999:
        return False, today
    _, bm, bd = civil_from_days(np.int64(math.floor(x / DAY_SECONDS)))
    doy = _MONTH_START[bm - 1] + bd - 1
    # this year; 29 February is the 28th in a common year
    cand = (
        y0 + doy + (1 if leap0 and bm > 2 else 0) - (1 if bm == 2 and bd == 29 and not leap0 else 0)
    )
    if cand < today:
        cand = (
            y1
            + doy
            + (1 if leap1 and bm > 2 else 0)
            - (1 if bm == 2 and bd == 29 and not leap1 else 0)
        )
    return cand - today < days, cand


@_jit
def anniversary(x, days, today):  # type: ignore[no-untyped-def]
    """(match, epoch day of the next anniversary) of the date `x` seen on day `today`."""
    if not (today >= MIN_DAY and today < MAX_DAY):
        return False, today
    ty, y0, y1, leap0, leap1 = year_of(today)
    return anniversary_in(x, days, today, ty, y0, y1, leap0, leap1)


@_inline
def window_sum(f32, wi, days, offset, today):  # type: ignore[no-untyped-def]
    """`window_sum_row` of a single profile's float32 view (a reshape to call that one
    measured 15 ns slower)."""
    head = f32[wi]
    if not (head > -1e9 and head < 1e9):
        return 0.0
    h = np.int64(head)
    lo = max(today - offset - days + 1, h - WINDOW_DAYS + 1)
    n = min(today - offset, h) - lo + 1
    if n <= 0:
        return 0.0
    first = lo % WINDOW_DAYS
    end = min(WINDOW_DAYS, first + n)
    base = wi + 1
    total = 0.0
    for j in range(first, end):
        total += np.float64(f32[base + j])
    for j in range(n - (end - first)):
        total += np.float64(f32[base + j])
    return total


@_inline
def window_sum_row(f32b, row, wi, days, offset, today):  # type: ignore[no-untyped-def]
    """Sum of the daily counts of days (today - offset - days, today - offset] of a row.

    Only days inside the ring (head - 35, head] count: one contiguous run of ring
    slots, i.e. at most two straight runs of the array, so there is no test per day.
    Days are added oldest first, as in the twin (identical floats). Measured: 24 ns for
    30 days (one chain of float adds bounds it), 37 ns with four round-robin partial
    sums (the lane choice costs more than the latency it hides).
    """
    head = f32b[row, wi]
    if not (head > -1e9 and head < 1e9):
        return 0.0
    h = np.int64(head)
    lo = max(today - offset - days + 1, h - WINDOW_DAYS + 1)
    n = min(today - offset, h) - lo + 1
    if n <= 0:
        return 0.0
    first = lo % WINDOW_DAYS
    end = min(WINDOW_DAYS, first + n)
    base = wi + 1
    total = 0.0
    for j in range(first, end):
        total += np.float64(f32b[row, base + j])
    for j in range(n - (end - first)):
        total += np.float64(f32b[row, base + j])
    return total


@_inline
def mix64(x):  # type: ignore[no-untyped-def]
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@_inline
def in_sorted(consts, b, c, x):  # type: ignore[no-untyped-def]
    """Is x in consts[b:b+c] (sorted)? Binary search."""
    lo = b
    hi = b + c
    while lo < hi:
        mid = (lo + hi) >> 1
        k = consts[mid]
        if k == x:
            return True
        if k < x:
            lo = mid + 1
        else:
            hi = mid
    return False


@_jit  # not inlined: it is big (compile time); the hot paths inline their own tests
def leaf(code, consts, f, f32, now, today, pc, bits):  # type: ignore[no-untyped-def]
    """The outcome of test row `pc` for one profile (`bits`: the segments decided so far)."""
    op = code[pc, OP]
    cmp = code[pc, CMP]
    a = code[pc, A]
    b = code[pc, B]
    if op == OP_CMP:
        return compare(f[a], cmp, consts[b], consts[b + 1] if cmp == BETWEEN else 0.0)
    if op == OP_IN:
        x = f[a]
        return x == x and in_sorted(consts, b, code[pc, C], x) != (cmp == 1)
    if op == OP_SEGMENT:
        return (bits[a >> 6] >> np.uint64(a & 63)) & _ONE == _ONE
    if op == OP_EXISTS:
        present = False
        for i in range(a, a + code[pc, D]):
            if f[i] == f[i]:
                present = True
        return present != (cmp == 1)
    if op == OP_AGE:
        x = f[a]
        if x != x:
            return False
        if cmp == 0:
            return now - x < consts[b]
        return now - x >= consts[b]
    if op == OP_CONST:
        return cmp == 1
    if op == OP_REF:
        x = f[a]
        y = f[code[pc, C]]
        if x != x or y != y:
            return False
        return compare(x, cmp, consts[b] * y, 0.0)
    if op == OP_RATIO:
        x = f[a]
        y = f[code[pc, C]]
        if x != x or y != y or y == 0.0:
            return False
        return compare(x / y, cmp, consts[b], consts[b + 1] if cmp == BETWEEN else 0.0)
    if op == OP_TAGS:
        c = code[pc, C]
        any_tag = False
        hits = 0
        for i in range(a, a + code[pc, D]):
            t = f[i]
            if t == t:
                any_tag = True
                for j in range(b, b + c):
                    if consts[j] == t:
                        hits += 1
                        break
        if not any_tag:
            return False
        if cmp == TAGS_ANY:
            return hits > 0
        if cmp == TAGS_ALL:
            return _has_all(code, consts, f, pc)
        return hits == 0
    if op == OP_WINDOW:
        s = window_sum(f32, a, code[pc, C], code[pc, D], today)
        return compare(s, cmp, consts[b], consts[b + 1] if cmp == BETWEEN else 0.0)
    if op == OP_WINDOW_REF:
        s = window_sum(f32, a, code[pc, C], code[pc, D], today)
        r = window_sum(
            f32, np.int64(consts[b]), np.int64(consts[b + 1]), np.int64(consts[b + 2]), today
        )
        return compare(s, cmp, consts[b + 3] * r, 0.0)
    if op == OP_ANNIV:
        match, _ = anniversary(f[a], code[pc, C], today)
        return match
    if op == OP_BUCKET:
        h = f[a]
        if not (h >= 0.0 and h < 4294967296.0) or h != math.floor(h):
            return False
        x = (np.uint64(h) << np.uint64(32)) | np.uint64(consts[b])
        bucket = np.float64(mix64(x) % np.uint64(10000))
        return consts[b + 1] <= bucket < consts[b + 2]
    return False


@_jit
def _has_all(code, consts, f, pc):  # type: ignore[no-untyped-def]
    a = code[pc, A]
    b = code[pc, B]
    for j in range(b, b + code[pc, C]):
        seen = False
        for i in range(a, a + code[pc, D]):
            if f[i] == consts[j]:
                seen = True
                break
        if not seen:
            return False
    return True


@_jit
def eval_single(code, consts, f, now, out):  # type: ignore[no-untyped-def]
    """Membership bitset of one profile `f` at `now` into `out` (uint64[words])."""
    for w in range(out.shape[0]):
        out[w] = 0
    f32 = f.view(np.float32)
    today = today_of(now)
    n = code.shape[0]
    pc = 0
    while pc < n:
        op = code[pc, OP]
        if op == OP_SET:
            bit = code[pc, A]
            out[bit >> 6] |= _ONE << np.uint64(bit & 63)
            pc += 1
            continue
        # The common tests inline; the rest through `leaf` (a generic branchy body costs
        # ~15 ns a row here against ~5 ns inline, measured on the bench's 20 segments).
        cmp = code[pc, CMP]
        b = code[pc, B]
        if op == OP_CMP:
            v = compare(f[code[pc, A]], cmp, consts[b], consts[b + 1] if cmp == BETWEEN else 0.0)
        elif op == OP_IN:
            x = f[code[pc, A]]
            v = x == x and in_sorted(consts, b, code[pc, C], x) != (cmp == 1)
        elif op == OP_SEGMENT:
            a = code[pc, A]
            v = (out[a >> 6] >> np.uint64(a & 63)) & _ONE == _ONE
        elif op == OP_AGE:
            x = now - f[code[pc, A]]
            v = x < consts[b] if cmp == 0 else x >= consts[b]
        elif op == OP_EXISTS and code[pc, D] == 1:
            x = f[code[pc, A]]
            v = (x == x) != (cmp == 1)
        elif op == OP_CONST:
            v = cmp == 1
        elif op == OP_WINDOW:
            total = window_sum(f32, code[pc, A], code[pc, C], code[pc, D], today)
            v = compare(total, cmp, consts[b], consts[b + 1] if cmp == BETWEEN else 0.0)
        elif op == OP_WINDOW_REF:
            a = code[pc, A]
            total = window_sum(f32, a, code[pc, C], code[pc, D], today)
            ref = window_sum(
                f32, np.int64(consts[b]), np.int64(consts[b + 1]), np.int64(consts[b + 2]), today
            )
            v = compare(total, cmp, consts[b + 3] * ref, 0.0)
        elif op in (OP_REF, OP_RATIO):
            x = f[code[pc, A]]
            y = f[code[pc, C]]
            if x != x or y != y:
                v = False
            elif op == OP_REF:
                v = compare(x, cmp, consts[b] * y, 0.0)
            else:
                v = y != 0.0 and compare(
                    x / y, cmp, consts[b], consts[b + 1] if cmp == BETWEEN else 0.0
                )
        elif op == OP_ANNIV:
            v, _ = anniversary(f[code[pc, A]], code[pc, C], today)
        elif op == OP_TAGS and cmp != TAGS_ALL:
            a = code[pc, A]
            c = code[pc, C]
            any_tag = False
            hits = 0
            for i in range(a, a + code[pc, D]):
                t = f[i]
                if t == t:
                    any_tag = True
                    for j in range(b, b + c):
                        if consts[j] == t:
                            hits += 1
                            break
            v = any_tag and (hits > 0) == (cmp == TAGS_ANY)
        else:
            v = leaf(code, consts, f, f32, now, today, pc, out)
        pc = code[pc, JT] if v else code[pc, JF]


#: Every dispatcher of this module (each with the content-keyed disk cache).
DISPATCHERS = jitcache.attach_all(globals())
