"""The batch kernel: N profiles (rows of a C-contiguous block) → N membership bitsets.

Profiles go in blocks of `abi.BLOCK`. Each test row of the program runs over the whole
block (vectorised interpretation) and "which profiles reach which row" masks flow along
the JT/JF jumps, so the program is walked once per block, not once per profile
(walking it per profile measured 19× slower than generated code, see the issue).
The kernel releases the GIL (`nogil`), so the parallel variant is plain threads over
slices of the block (`segserver.engine.evaluate_batch`); a `parallel=True` (prange)
Numba kernel scaled no better on the 2-vCPU development VM and cost 12-14 s more of
compiling per signature.
"""

from __future__ import annotations

import math

import numpy as np

from segserver.engine import jitcache
from segserver.engine.abi import (
    BETWEEN,
    BLOCK,
    CMP,
    EQ,
    GE,
    GT,
    JF,
    JT,
    LE,
    LT,
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
from segserver.engine.kernels import (
    _ONE,
    MAX_DAY,
    MIN_DAY,
    _inline,
    _jit,
    anniversary_in,
    compare,
    in_sorted,
    leaf,
    mix64,
    today_of,
    window_sum_row,
    year_of,
)


@_inline
def _block_leaf(  # type: ignore[no-untyped-def]
    code, consts, block, f32b, cols, slot, now, today, pc, out, start, cnt, v, wsum, wdone, acc
):
    """v[:cnt] = outcome of row `pc` for profiles start .. start+cnt-1 of the block.

    Scalar features come from `cols` (the block's used columns, transposed: contiguous,
    so these loops vectorise); `slot[i]` is the row of feature i in `cols`.
    """
    op = code[pc, OP]
    cmp = code[pc, CMP]
    a = code[pc, A]
    b = code[pc, B]
    # The column of feature a when this is a scalar test (other ops' A is no feature index).
    ca = slot[a] if a < slot.shape[0] and slot[a] >= 0 else 0
    if op == OP_CMP:
        k0 = consts[b]
        k1 = consts[b + 1] if cmp == BETWEEN else 0.0
        if cmp == GT:
            for p in range(cnt):
                v[p] = cols[ca, p] > k0
        elif cmp == GE:
            for p in range(cnt):
                v[p] = cols[ca, p] >= k0
        elif cmp == LT:
            for p in range(cnt):
                v[p] = cols[ca, p] < k0
        elif cmp == LE:
            for p in range(cnt):
                v[p] = cols[ca, p] <= k0
        elif cmp == EQ:
            for p in range(cnt):
                v[p] = cols[ca, p] == k0
        else:
            for p in range(cnt):
                v[p] = compare(cols[ca, p], cmp, k0, k1)
    elif op == OP_AGE:
        k = consts[b]
        if cmp == 0:
            for p in range(cnt):
                v[p] = now - cols[ca, p] < k
        else:
            for p in range(cnt):
                v[p] = now - cols[ca, p] >= k
    elif op == OP_EXISTS and code[pc, D] == 1:
        for p in range(cnt):
            x = cols[ca, p]
            v[p] = (x == x) != (cmp == 1)
    elif op == OP_CONST:
        for p in range(cnt):
            v[p] = cmp == 1
    elif op == OP_SEGMENT:
        w = a >> 6
        sh = np.uint64(a & 63)
        for p in range(cnt):
            v[p] = (acc[w, p] >> sh) & _ONE == _ONE
    elif op == OP_IN:
        c = code[pc, C]
        for p in range(cnt):
            x = cols[ca, p]
            v[p] = x == x and in_sorted(consts, b, c, x) != (cmp == 1)
    elif op == OP_REF:
        c = code[pc, C]
        cc = slot[c]
        k = consts[b]
        for p in range(cnt):
            x = cols[ca, p]
            y = cols[cc, p]
            v[p] = x == x and y == y and compare(x, cmp, k * y, 0.0)
    elif op == OP_RATIO:
        c = code[pc, C]
        cc = slot[c]
        k0 = consts[b]
        k1 = consts[b + 1] if cmp == BETWEEN else 0.0
        for p in range(cnt):
            x = cols[ca, p]
            y = cols[cc, p]
            v[p] = x == x and y == y and y != 0.0 and compare(x / y, cmp, k0, k1)
    elif op in (OP_WINDOW, OP_WINDOW_REF):
        # Each distinct (window, days, offset) is summed once per block, however many
        # segments test it (the program numbers them: "spec").
        ref = op == OP_WINDOW_REF
        spec = np.int64(consts[b + 4] if ref else consts[b + 2])
        if not wdone[spec]:
            window_sums_block(f32b, start, cnt, a, code[pc, C], code[pc, D], today, wsum, spec)
            wdone[spec] = True
        if not ref:
            k0 = consts[b]
            k1 = consts[b + 1]
            for p in range(cnt):
                v[p] = compare(wsum[spec, p], cmp, k0, k1)
        else:
            other = np.int64(consts[b + 5])
            if not wdone[other]:
                window_sums_block(
                    f32b,
                    start,
                    cnt,
                    np.int64(consts[b]),
                    np.int64(consts[b + 1]),
                    np.int64(consts[b + 2]),
                    today,
                    wsum,
                    other,
                )
                wdone[other] = True
            k = consts[b + 3]
            for p in range(cnt):
                v[p] = compare(wsum[spec, p], cmp, k * wsum[other, p], 0.0)
    elif op == OP_TAGS:
        c = code[pc, C]
        d = code[pc, D]
        for p in range(cnt):
            row = start + p
            any_tag = False
            hits = 0
            for i in range(a, a + d):
                t = block[row, i]
                if t == t:
                    any_tag = True
                    for j in range(b, b + c):
                        if consts[j] == t:
                            hits += 1
                            break
            if not any_tag:
                v[p] = 0
            elif cmp == TAGS_ANY:
                v[p] = hits > 0
            elif cmp == TAGS_ALL:
                every = True
                for j in range(b, b + c):
                    seen = False
                    for i in range(a, a + d):
                        if block[row, i] == consts[j]:
                            seen = True
                            break
                    if not seen:
                        every = False
                        break
                v[p] = every
            else:
                v[p] = hits == 0
    elif op == OP_EXISTS:
        d = code[pc, D]
        for p in range(cnt):
            present = False
            for i in range(a, a + d):
                x = block[start + p, i]
                if x == x:
                    present = True
            v[p] = present != (cmp == 1)
    elif op == OP_ANNIV:
        c = code[pc, C]
        if today >= MIN_DAY and today < MAX_DAY:
            ty, y0, y1, leap0, leap1 = year_of(today)
            for p in range(cnt):
                match, _ = anniversary_in(block[start + p, a], c, today, ty, y0, y1, leap0, leap1)
                v[p] = match
        else:
            for p in range(cnt):
                v[p] = 0
    elif op == OP_BUCKET:
        salt = np.uint64(consts[b])
        lo_b = consts[b + 1]
        hi_b = consts[b + 2]
        for p in range(cnt):
            h = block[start + p, a]
            if not (h >= 0.0 and h < 4294967296.0) or h != math.floor(h):
                v[p] = 0
            else:
                bucket = np.float64(
                    mix64((np.uint64(h) << np.uint64(32)) | salt) % np.uint64(10000)
                )
                v[p] = lo_b <= bucket < hi_b
    else:
        for p in range(cnt):
            row = start + p
            v[p] = leaf(code, consts, block[row], f32b[row], now, today, pc, out[row])


@_inline
def window_sums_block(f32b, start, cnt, wi, days, offset, today, sums, at):  # type: ignore[no-untyped-def]
    """sums[at, p] = `window_sum_row` of rows start .. start+cnt-1."""
    for p in range(cnt):
        sums[at, p] = window_sum_row(f32b, start + p, wi, days, offset, today)


@_jit
def _batch_range(code, consts, block, now, out, lo, hi, reach, v, cols, feat, slot):  # type: ignore[no-untyped-def]
    """Evaluate profiles [lo, hi) of `block`, BLOCK at a time (scratch: reach, v, cols).

    Measured on 500 two-test segments: setting each segment's bit straight into `out`
    (one cache line per profile) cost 0.85 ns per profile·segment, 40 % of the total;
    a word-major block buffer makes it a contiguous loop.
    """
    acc = np.zeros((out.shape[1], BLOCK), dtype=np.uint64)
    specs = window_specs(code, consts)
    wsum = np.zeros((max(specs, 1), BLOCK), dtype=np.float64)  # window sums of the block
    wdone = np.zeros(max(specs, 1), dtype=np.bool_)  # which are summed already
    f32b = block.view(np.float32)
    today = today_of(now)
    n = code.shape[0]
    words = out.shape[1]
    for start in range(lo, hi, BLOCK):
        cnt = min(BLOCK, hi - start)
        # Transpose the used columns once per block, row by row: one pass over each
        # profile's bytes in memory order (column by column measured 1.6× slower on
        # blocks larger than the caches).
        used = feat.shape[0]
        for p in range(cnt):
            row = start + p
            for j in range(used):
                cols[j, p] = block[row, feat[j]]
        acc[:, :] = 0  # the block's bits, word-major: setting a bit is a contiguous loop
        wdone[:] = False  # no window summed yet for this block
        s0 = 0
        while s0 < n:
            s1 = s0
            while code[s1, OP] != OP_SET:
                s1 += 1
            rows = s1 - s0 + 2  # the segment's rows, its SET row and the "no" sink
            reach[:rows, :cnt] = 0
            reach[0, :cnt] = 1
            for pc in range(s0, s1):
                # No row views (reach[r], cols[j], ...) in here: each view costs two
                # atomic reference-count updates, measured ~40 % of a row's time.
                r = pc - s0
                live = 0
                for p in range(cnt):
                    live |= reach[r, p]
                if live == 0:
                    continue
                _block_leaf(
                    code,
                    consts,
                    block,
                    f32b,
                    cols,
                    slot,
                    now,
                    today,
                    pc,
                    out,
                    start,
                    cnt,
                    v,
                    wsum,
                    wdone,
                    acc,
                )
                jt = code[pc, JT] - s0
                jf = code[pc, JF] - s0
                for p in range(cnt):
                    t = reach[r, p]
                    x = v[p]
                    reach[jt, p] |= t & x
                    reach[jf, p] |= t & (x ^ 1)
            bit = code[s1, A]
            w = bit >> 6
            sh = np.uint64(bit & 63)
            r = s1 - s0
            for p in range(cnt):
                acc[w, p] |= np.uint64(reach[r, p]) << sh
            s0 = s1 + 1
        for p in range(cnt):  # one transposing copy per block (not one per segment)
            for w in range(words):
                out[start + p, w] = acc[w, p]


@_jit
def window_specs(code, consts):  # type: ignore[no-untyped-def]
    """How many distinct (window, days, offset) the program sums."""
    count = 0
    for pc in range(code.shape[0]):
        op = code[pc, OP]
        b = code[pc, B]
        if op == OP_WINDOW:
            count = max(count, int(consts[b + 2]) + 1)
        elif op == OP_WINDOW_REF:
            count = max(count, int(consts[b + 4]) + 1)
            count = max(count, int(consts[b + 5]) + 1)
    return count


@_jit
def _longest_segment(code):  # type: ignore[no-untyped-def]
    longest = 0
    s0 = 0
    for pc in range(code.shape[0]):
        if code[pc, OP] == OP_SET:
            longest = max(longest, pc - s0 + 2)
            s0 = pc + 1
    return longest


@_jit
def scalar_columns(code, width):  # type: ignore[no-untyped-def]
    """(feature index of each used column, column slot of each feature index or -1)."""
    slot = np.full(width, -1, dtype=np.int64)
    count = 0
    for pc in range(code.shape[0]):
        op = code[pc, OP]
        if op in (OP_CMP, OP_AGE, OP_IN, OP_REF, OP_RATIO) or (
            op == OP_EXISTS and code[pc, D] == 1
        ):
            for i in (code[pc, A], code[pc, C] if op in (OP_REF, OP_RATIO) else -1):
                if i >= 0 and slot[i] < 0:
                    slot[i] = count
                    count += 1
    feat = np.empty(count, dtype=np.int64)
    for i in range(width):
        if slot[i] >= 0:
            feat[slot[i]] = i
    return feat, slot


@_jit
def eval_batch(code, consts, block, now, out):  # type: ignore[no-untyped-def]
    """Membership bitsets of every row of `block` into `out` (uint64[N, words]), one core."""
    feat, slot = scalar_columns(code, block.shape[1])
    reach = np.zeros((max(_longest_segment(code), 1), BLOCK), dtype=np.uint8)
    v = np.zeros(BLOCK, dtype=np.uint8)
    cols = np.zeros((max(feat.shape[0], 1), BLOCK), dtype=np.float64)
    _batch_range(code, consts, block, now, out, 0, block.shape[0], reach, v, cols, feat, slot)


#: Every dispatcher of this module (each with the content-keyed disk cache).
DISPATCHERS = jitcache.attach_all(globals())
