"""The same rule-program ABI evaluated with NumPy array operations (a benchmark baseline).

Each test row runs over every profile of the block as whole-array operations, with the
same "which profiles reach which row" propagation as the batch kernel. It exists to
measure what the Numba batch kernel buys over plain vectorised NumPy (`bench eval`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.engine import abi
from segserver.engine.compiler import Program
from segserver.engine.reference import MAX_INSTANT, MIN_INSTANT, today_of
from segserver.profile.schema import DAY_SECONDS, WINDOW_DAYS

B = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def evaluate_numpy(program: Program, block: F64, now: float) -> npt.NDArray[np.uint64]:
    """Bitsets (uint64[N, words]) of every row of `block` at `now`."""
    n = block.shape[0]
    out = np.zeros((n, program.words), np.uint64)
    code, k = program.code, program.consts
    f32 = block.view(np.float32)
    today = today_of(now)
    s0 = 0
    for s1 in np.flatnonzero(code[:, abi.OP] == abi.OP_SET):
        reach: list[B | None] = [None for _ in range(s1 - s0 + 2)]
        reach[0] = np.ones(n, np.bool_)
        for pc in range(s0, s1):
            here = reach[pc - s0]
            if here is None or not here.any():
                continue
            v = _leaf(code[pc], k, block, f32, now, today, out)
            for target, value in ((code[pc, abi.JT], here & v), (code[pc, abi.JF], here & ~v)):
                r = int(target) - s0
                prev = reach[r]
                reach[r] = value if prev is None else prev | value
        bit = int(code[s1, abi.A])
        final = reach[s1 - s0]
        if final is not None:
            out[:, bit >> 6] |= final.astype(np.uint64) << np.uint64(bit & 63)
        s0 = int(s1) + 1
    return out


def _b(x: Any) -> B:
    return np.asarray(x, dtype=np.bool_)


def _cmp(x: F64, cmp: int, k0: float, k1: float) -> B:
    with np.errstate(invalid="ignore"):
        if cmp == abi.EQ:
            return _b(x == k0)
        if cmp == abi.NE:
            return _b((x != k0) & ~np.isnan(x))
        if cmp == abi.GT:
            return _b(x > k0)
        if cmp == abi.GE:
            return _b(x >= k0)
        if cmp == abi.LT:
            return _b(x < k0)
        if cmp == abi.LE:
            return _b(x <= k0)
        return _b((x >= k0) & (x <= k1))


def _window(f32: npt.NDArray[np.float32], wi: int, days: int, offset: int, today: int) -> F64:
    """`reference.window_sum` for every row (days added oldest first, 0 outside the ring)."""
    head = f32[:, wi].astype(np.float64)
    ok = (head > -1e9) & (head < 1e9)
    h = np.where(ok, head, 0).astype(np.int64)
    total = np.zeros(f32.shape[0])
    for d in range(today - offset - days + 1, today - offset + 1):
        inside = ok & (h - WINDOW_DAYS < d) & (d <= h)
        total += np.where(inside, f32[:, wi + 1 + d % WINDOW_DAYS], 0.0)
    return total


def _civil(z: I64) -> tuple[I64, I64, I64]:
    z = z + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (m <= 2), m, d


def _days(y: I64, m: I64, d: I64) -> I64:
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    return np.asarray(
        era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468, dtype=np.int64
    )


def _anniversary(x: F64, days: int, today: int) -> B:
    ok = (x >= MIN_INSTANT) & (x < MAX_INSTANT)
    born = np.floor(np.where(ok, x, 0.0) / DAY_SECONDS).astype(np.int64)
    _, bm, bd = _civil(born)
    ty = int(_civil(np.array([today]))[0][0])
    if not -719162 <= today < 2932896 or ty >= 9999:
        return np.zeros(x.shape[0], np.bool_)

    def on(year: int) -> I64:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        day = np.where((bm == 2) & (bd == 29) & (not leap), 28, bd)
        return _days(np.full_like(bm, year), bm, day)

    cand = on(ty)
    cand = np.where(cand < today, on(ty + 1), cand)
    return _b(ok & (cand - today < days))


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _leaf(
    row: I64,
    k: F64,
    block: F64,
    f32: npt.NDArray[np.float32],
    now: float,
    today: int,
    out: npt.NDArray[np.uint64],
) -> B:
    op, cmp, a, b, c, d = (int(v) for v in row[:6])
    n = block.shape[0]
    k1 = float(k[b + 1]) if cmp == abi.BETWEEN else 0.0
    if op == abi.OP_CONST:
        return _b(np.full(n, cmp == 1))
    if op == abi.OP_CMP:
        return _cmp(block[:, a], cmp, float(k[b]), k1)
    if op == abi.OP_IN:
        x = block[:, a]
        inside = np.isin(x, k[b : b + c])
        return _b(~np.isnan(x) & (inside != (cmp == 1)))
    if op == abi.OP_EXISTS:
        return _b((~np.isnan(block[:, a : a + d])).any(axis=1) != (cmp == 1))
    if op == abi.OP_AGE:
        age = now - block[:, a]
        with np.errstate(invalid="ignore"):
            return _b(age < k[b] if cmp == 0 else age >= k[b])
    if op == abi.OP_TAGS:
        slots = block[:, a : a + d]
        present = (~np.isnan(slots)).any(axis=1)
        want = k[b : b + c]
        if cmp == abi.TAGS_ALL:
            have_all = np.ones(n, np.bool_)
            for code in want:
                have_all &= (slots == code).any(axis=1)
            return _b(present & have_all)
        hits = np.isin(slots, want).any(axis=1)
        return _b(present & (hits if cmp == abi.TAGS_ANY else ~hits))
    if op == abi.OP_ANNIV:
        return _anniversary(block[:, a], c, today)
    if op == abi.OP_WINDOW:
        return _cmp(_window(f32, a, c, d, today), cmp, float(k[b]), k1)
    if op == abi.OP_WINDOW_REF:
        s = _window(f32, a, c, d, today)
        r = _window(f32, int(k[b]), int(k[b + 1]), int(k[b + 2]), today)
        return _cmp_vec(s, cmp, k[b + 3] * r)
    if op == abi.OP_REF:
        x, y = block[:, a], block[:, c]
        return _b(~np.isnan(x) & ~np.isnan(y) & _cmp_vec(x, cmp, k[b] * y))
    if op == abi.OP_RATIO:
        x, y = block[:, a], block[:, c]
        ok = ~np.isnan(x) & ~np.isnan(y) & (y != 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _b(
                ok & _cmp(np.where(ok, x / np.where(ok, y, 1.0), np.nan), cmp, float(k[b]), k1)
            )
    if op == abi.OP_BUCKET:
        h = block[:, a]
        ok = (h >= 0) & (h < 4294967296.0) & (h == np.floor(np.nan_to_num(h)))
        ids = np.where(ok, h, 0).astype(np.uint64)
        bucket = (_mix((ids << np.uint64(32)) | np.uint64(int(k[b]))) % np.uint64(10000)).astype(
            np.float64
        )
        return _b(ok & (k[b + 1] <= bucket) & (bucket < k[b + 2]))
    if op == abi.OP_SEGMENT:
        return _b(((out[:, a >> 6] >> np.uint64(a & 63)) & np.uint64(1)).astype(np.bool_))
    return _b(np.zeros(n, np.bool_))


def _cmp_vec(x: F64, cmp: int, y: F64) -> B:
    with np.errstate(invalid="ignore"):
        if cmp == abi.EQ:
            return _b(x == y)
        if cmp == abi.NE:
            return _b((x != y) & ~np.isnan(x) & ~np.isnan(y))
        if cmp == abi.GT:
            return _b(x > y)
        if cmp == abi.GE:
            return _b(x >= y)
        if cmp == abi.LT:
            return _b(x < y)
        return _b(x <= y)
