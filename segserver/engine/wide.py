"""One profile against a large program, without a branch per test outcome.

The short-circuit interpreter (`kernels.eval_single`) jumps on every test's outcome:
for hundreds of segments the CPU mispredicts about one jump per row (measured: 2.3 ns
per row when the same profile repeats, 6.9 ns over varied profiles; 31 µs for 1 000
generated segments). Here every test runs, in two passes whose branches the CPU
predicts:

1. the tests, sorted by kind at build time (`build_tables`), each writing its outcome
   into `v[row]`; window sums and tag sets are worked out once per profile;
2. the reach of the rows, segment by segment in program order, in one 64-bit register:
   bit i is "row pc + i is reached"; a row ORs `reached & outcome` into the bit of its
   true jump and `reached & not outcome` into its false jump, then the register shifts
   by one. A SET row ORs its reach into the segment's bit of `out`.

All tests are total (a missing value is no match), so running the ones the
short-circuit would skip changes nothing but time. Programs whose segments are longer
than 62 rows (a jump past the register) or small (the interpreter takes < 2 µs) keep
the short-circuit interpreter (`Program.wide` is None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segserver.engine import abi, jitcache
from segserver.engine.kernels import (
    _ONE,
    _jit,
    compare,
    in_sorted,
    leaf,
    today_of,
    window_sum,
)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Below this many rows the short-circuit interpreter is as fast or faster (measured,
#: short-circuit vs this: 355 rows 2.7 vs 3.2 µs, 533 rows 4.6 vs 4.2, 2 086 rows 19.6
#: vs 10.8, 3 515 rows 31.8 vs 17.0).
MIN_ROWS = 512
#: A segment's jumps must fit the 64-bit reach register.
MAX_SEGMENT_ROWS = 62

# Test kinds, in the order the test pass runs them (sorted: the branch on the kind is
# taken the same way for long runs of rows).
(GT, GE, LT, LE, EQ, NE, BETWEEN, IN_SET, NOT_IN_SET, EXISTS, MISSING, WITHIN, OLDER,
 TRUE, FALSE, WINDOW, TAGS_ANY, TAGS_ALL, TAGS_NONE, TAGS_PRESENT, TAGS_ABSENT,
 OTHER) = range(22)  # fmt: skip
_CMP_KINDS = {abi.GT: GT, abi.GE: GE, abi.LT: LT, abi.LE: LE, abi.EQ: EQ, abi.NE: NE,
              abi.BETWEEN: BETWEEN}  # fmt: skip
_TAG_KINDS = {abi.TAGS_ANY: TAGS_ANY, abi.TAGS_ALL: TAGS_ALL, abi.TAGS_NONE: TAGS_NONE}


@dataclass(frozen=True, slots=True)
class Tables:
    """A program's tests sorted by kind and its rows' jumps, for `eval_wide`."""

    kind: I64  # per test: its kind
    row: I64  # per test: its row in the program
    a: I64  # per test: the feature it reads (or the tag set's number)
    k: F64  # per test: (k0, k1)
    i: I64  # per test: (b, c) of a set, (spec, cmp) of a window, (tag mask, 0)
    tag_sets: I64  # per tags attribute tested: (first slot, slots)
    prop: I64  # per row: jt - pc | jf - pc << 8 | SET << 16 | SEGMENT << 17 | bit << 18
    specs: int  # distinct windows


def build_tables(code: I64, consts: F64, min_rows: int = MIN_ROWS) -> Tables | None:
    """The tables of a program, or None when the short-circuit interpreter suits it
    (fewer than `min_rows` rows, or a segment too long for the reach register)."""
    n = code.shape[0]
    if n < min_rows:
        return None
    tests: list[tuple[int, int, int, float, float, int, int]] = []
    tag_sets: dict[tuple[int, int], int] = {}
    prop = np.zeros(n, dtype=np.int64)
    s0 = 0
    specs = 0
    for pc, row in enumerate(code.tolist()):
        op, cmp, a, b, c, d, jt, jf = row
        if op == abi.OP_SET:
            if pc - s0 + 1 > MAX_SEGMENT_ROWS:
                return None
            prop[pc] = 1 | 1 << 8 | 1 << 16 | a << 18
            s0 = pc + 1
            continue
        prop[pc] = (jt - pc) | (jf - pc) << 8
        if op == abi.OP_SEGMENT:
            prop[pc] |= 1 << 17 | a << 18
            continue
        k0 = k1 = 0.0
        i0 = i1 = 0
        if op == abi.OP_CMP:
            kind = _CMP_KINDS.get(cmp, FALSE)
            k0 = float(consts[b])
            k1 = float(consts[b + 1]) if cmp == abi.BETWEEN else 0.0
        elif op == abi.OP_IN and c == 1:  # in / not in one value: eq / ne (NaN: no match)
            kind, k0 = (EQ if cmp == 0 else NE), float(consts[b])
        elif op == abi.OP_IN:
            kind, i0, i1 = (IN_SET if cmp == 0 else NOT_IN_SET), b, c
        elif op == abi.OP_EXISTS and d == 1:
            kind = EXISTS if cmp == 0 else MISSING
        elif op == abi.OP_EXISTS:
            kind = TAGS_PRESENT if cmp == 0 else TAGS_ABSENT
            a = tag_sets.setdefault((a, d), len(tag_sets))
        elif op == abi.OP_AGE:
            kind, k0 = (WITHIN if cmp == 0 else OLDER), float(consts[b])
        elif op == abi.OP_CONST:
            kind = TRUE if cmp == 1 else FALSE
        elif op == abi.OP_WINDOW:
            kind, k0, k1 = WINDOW, float(consts[b]), float(consts[b + 1])
            i0, i1 = int(consts[b + 2]), cmp
            specs = max(specs, i0 + 1)
        elif op == abi.OP_TAGS and _small_codes(consts[b : b + c]):
            kind = _TAG_KINDS[cmp]
            i0 = sum(1 << int(x) for x in set(consts[b : b + c].tolist()))
            a = tag_sets.setdefault((a, d), len(tag_sets))
        else:
            kind = OTHER  # through the interpreter's `leaf`
        if kind in (WINDOW, OTHER, TRUE, FALSE):
            a = 0  # reads no scalar feature (a window's A indexes the float32 view)
        tests.append((kind, pc, a, k0, k1, i0, i1))
    tests.sort()
    return Tables(
        kind=np.array([t[0] for t in tests], dtype=np.int64),
        row=np.array([t[1] for t in tests], dtype=np.int64),
        a=np.array([t[2] for t in tests], dtype=np.int64),
        k=np.array([t[3:5] for t in tests], dtype=np.float64).reshape(-1, 2),
        i=np.array([t[5:7] for t in tests], dtype=np.int64).reshape(-1, 2),
        tag_sets=np.array(list(tag_sets), dtype=np.int64).reshape(-1, 2),
        prop=prop,
        specs=specs,
    )


def _small_codes(codes: F64) -> bool:
    """Tag codes that fit a bit of a 63-bit mask (whole numbers 0 .. 62)."""
    return all(0 <= x < 63 and math.floor(x) == x for x in codes.tolist())


@_jit
def _tag_mask(f, first, slots):  # type: ignore[no-untyped-def]
    """The tags of slots first .. first+slots as bits: code t (0 .. 62) → bit t, any other
    present value → bit 63; 0 when no slot holds a tag."""
    mask = np.int64(0)
    for i in range(first, first + slots):
        t = f[i]
        if t == t:
            if t >= 0.0 and t < 63.0 and t == math.floor(t):
                mask |= np.int64(1) << np.int64(t)
            else:
                mask |= np.int64(-(2**63))
    return mask


@_jit
def eval_wide(code, consts, kind, row, fa, k, ki, tag_sets, prop, specs, f, now, out):  # type: ignore[no-untyped-def]
    """Membership bitset of one profile `f` at `now` into `out`, as `eval_single`."""
    n = code.shape[0]
    f32 = f.view(np.float32)
    today = today_of(now)
    v = np.zeros(n, dtype=np.uint8)  # outcome by row
    masks = np.empty(max(tag_sets.shape[0], 1), dtype=np.int64)
    for t in range(tag_sets.shape[0]):
        masks[t] = _tag_mask(f, tag_sets[t, 0], tag_sets[t, 1])
    wsum = np.empty(max(specs, 1))
    wdone = np.zeros(max(specs, 1), dtype=np.bool_)
    for w in range(out.shape[0]):
        out[w] = 0
    for j in range(kind.shape[0]):
        kd = kind[j]
        a = fa[j]
        x = f[a] if kd <= OLDER else 0.0
        if kd == GT:
            r = x > k[j, 0]
        elif kd == GE:
            r = x >= k[j, 0]
        elif kd == LT:
            r = x < k[j, 0]
        elif kd == LE:
            r = x <= k[j, 0]
        elif kd == EQ:
            r = x == k[j, 0]
        elif kd == NE:
            r = x != k[j, 0] and x == x
        elif kd == BETWEEN:
            r = k[j, 0] <= x <= k[j, 1]
        elif kd == IN_SET:
            r = in_sorted(consts, ki[j, 0], ki[j, 1], x)
        elif kd == NOT_IN_SET:
            r = x == x and not in_sorted(consts, ki[j, 0], ki[j, 1], x)
        elif kd == EXISTS:
            r = x == x
        elif kd == MISSING:
            r = x != x
        elif kd == WITHIN:
            r = now - x < k[j, 0]
        elif kd == OLDER:
            r = now - x >= k[j, 0]
        elif kd == TRUE:
            r = True
        elif kd == WINDOW:
            spec = ki[j, 0]
            if not wdone[spec]:
                pc = row[j]
                wsum[spec] = window_sum(
                    f32, code[pc, abi.A], code[pc, abi.C], code[pc, abi.D], today
                )
                wdone[spec] = True
            r = compare(wsum[spec], ki[j, 1], k[j, 0], k[j, 1])
        elif kd == TAGS_ANY:
            r = masks[a] & ki[j, 0] != 0
        elif kd == TAGS_ALL:
            m = masks[a]
            r = m != 0 and m & ki[j, 0] == ki[j, 0]
        elif kd == TAGS_NONE:
            m = masks[a]
            r = m != 0 and m & ki[j, 0] == 0
        elif kd == TAGS_PRESENT:
            r = masks[a] != 0
        elif kd == TAGS_ABSENT:
            r = masks[a] == 0
        elif kd == OTHER:
            r = leaf(code, consts, f, f32, now, today, row[j], out)
        else:
            r = False
        v[row[j]] = r
    reach = np.int64(1)  # bit i: row pc + i is reached
    for pc in range(n):
        p = prop[pc]
        here = reach & 1
        bit = p >> 18
        if (p >> 17) & 1:  # a SEGMENT row: the bit of an earlier segment (rare)
            outcome = np.int64((out[bit >> 6] >> np.uint64(bit & 63)) & _ONE)
        else:
            outcome = np.int64(v[pc])
        reach |= (here & outcome) << (p & 255)
        reach |= (here & (outcome ^ 1)) << ((p >> 8) & 255)
        is_set = (p >> 16) & 1
        # a SET row sets its segment's bit when reached; other rows OR in a zero
        out[(bit >> 6) * is_set] |= np.uint64(here & is_set) << np.uint64(bit & 63)
        reach = (reach >> 1) | is_set  # after a SET row: the next segment starts


#: Every dispatcher of this module (each with the content-keyed disk cache).
DISPATCHERS = jitcache.attach_all(globals())
