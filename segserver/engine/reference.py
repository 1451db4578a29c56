"""The pure-Python twin of the kernels: the same rule-program ABI, written plainly.

It is the executable definition of the semantics the Numba kernels must match (the
engine's tests run against both, ids `py` and `numba`, and a property test compares
them on random rules and profiles), and it can explain a result. It is written
independently of `kernels` (datetime for calendars, Python sums for windows) so the
two check each other rather than share a mistake.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.engine import abi
from segserver.engine.compiler import Program
from segserver.engine.hashing import bucket_of
from segserver.profile.schema import DAY_SECONDS, WINDOW_DAYS

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
EPOCH = date(1970, 1, 1)
#: Instants the calendar operators accept (years 1-9999); outside: no match.
MIN_INSTANT, MAX_INSTANT = -62135596800.0, 253402300800.0
INF = math.inf


def today_of(now: float) -> int:
    """The UTC day of `now` (a non-finite or absurd `now` counts as day 0, as in the kernels)."""
    return math.floor(now / DAY_SECONDS) if abs(now) < 1e15 else 0


def _present(x: float) -> bool:
    return not math.isnan(x)


def compare(x: float, cmp: int, k0: float, k1: float) -> bool:
    if math.isnan(x):
        return False
    if cmp == abi.EQ:
        return x == k0
    if cmp == abi.NE:
        return x != k0
    if cmp == abi.GT:
        return x > k0
    if cmp == abi.GE:
        return x >= k0
    if cmp == abi.LT:
        return x < k0
    if cmp == abi.LE:
        return x <= k0
    if cmp == abi.BETWEEN:
        return k0 <= x <= k1
    return False


def window_sum(f32: npt.NDArray[np.float32], wi: int, days: int, offset: int, today: int) -> float:
    """Sum of the daily counts of days (today - offset - days, today - offset].

    Days outside the ring (head - 35, head] count 0. Days are added oldest first, in
    float64: every implementation adds in this order, so their floats agree to the bit.
    """
    head = float(f32[wi])
    if not -1e9 < head < 1e9:
        return 0.0
    h = int(head)
    total = 0.0
    for d in range(today - offset - days + 1, today - offset + 1):
        if h - WINDOW_DAYS < d <= h:
            total += float(f32[wi + 1 + d % WINDOW_DAYS])
    return total


def anniversary(x: float, days: int, today: int) -> tuple[bool, int]:
    """(match, day of the next anniversary) of the date `x` seen on epoch day `today`."""
    if not MIN_INSTANT <= x < MAX_INSTANT or not -719162 <= today < 2932896:
        return False, today
    born = EPOCH + timedelta(days=math.floor(x / DAY_SECONDS))
    now = EPOCH + timedelta(days=today)

    def on(year: int) -> date:
        if born.month == 2 and born.day == 29 and not _leap(year):
            return date(year, 2, 28)  # 29 February counts as the 28th in other years
        return date(year, born.month, born.day)

    if now.year >= 9999:
        return False, today
    cand = on(now.year)
    if cand < now:
        cand = on(now.year + 1)
    until = (cand - now).days
    return until < days, today + until


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def leaf(program: Program, pc: int, f: F64, now: float, bits: U64) -> tuple[bool, dict[str, Any]]:
    """Evaluate test row `pc`; return the outcome and the values it compared."""
    op, cmp, a, b, c, d = (int(v) for v in program.code[pc, :6])
    k = program.consts
    f32 = f.view(np.float32)
    today = today_of(now)
    if op == abi.OP_CONST:
        return cmp == 1, {}
    if op == abi.OP_CMP:
        x = float(f[a])
        return compare(x, cmp, k[b], k[b + 1] if cmp == abi.BETWEEN else 0.0), {"actual": x}
    if op == abi.OP_IN:
        x = float(f[a])
        inside = x in set(k[b : b + c].tolist())
        return _present(x) and inside != (cmp == 1), {"actual": x}
    if op == abi.OP_TAGS:
        have = {float(v) for v in f[a : a + d] if _present(v)}
        want = set(k[b : b + c].tolist())
        if not have:
            return False, {"actual": []}
        result = {
            abi.TAGS_ANY: bool(have & want),
            abi.TAGS_ALL: want <= have,
            abi.TAGS_NONE: not (have & want),
        }[cmp]
        return result, {"actual": sorted(have)}
    if op == abi.OP_EXISTS:
        present = any(_present(v) for v in f[a : a + d])
        return present != (cmp == 1), {}
    if op == abi.OP_AGE:
        x = float(f[a])
        if not _present(x):
            return False, {"actual": x}
        age = now - x
        return (age < k[b]) if cmp == 0 else (age >= k[b]), {"actual": x, "age": age}
    if op == abi.OP_ANNIV:
        x = float(f[a])
        match, day = anniversary(x, c, today)
        return match, {"actual": x, "days_until": day - today}
    if op == abi.OP_WINDOW:
        s = window_sum(f32, a, c, d, today)
        return compare(s, cmp, k[b], k[b + 1] if cmp == abi.BETWEEN else 0.0), {"sum": s}
    if op == abi.OP_WINDOW_REF:
        s = window_sum(f32, a, c, d, today)
        r = window_sum(f32, int(k[b]), int(k[b + 1]), int(k[b + 2]), today)
        return compare(s, cmp, k[b + 3] * r, 0.0), {"sum": s, "ref_sum": r}
    if op == abi.OP_REF:
        x, y = float(f[a]), float(f[c])
        ok = _present(x) and _present(y) and compare(x, cmp, k[b] * y, 0.0)
        return ok, {"actual": x, "ref": y}
    if op == abi.OP_RATIO:
        x, y = float(f[a]), float(f[c])
        if not (_present(x) and _present(y)) or y == 0.0:
            return False, {"numerator": x, "denominator": y}
        r = x / y
        ok = compare(r, cmp, k[b], k[b + 1] if cmp == abi.BETWEEN else 0.0)
        return ok, {"numerator": x, "denominator": y, "ratio": r}
    if op == abi.OP_BUCKET:
        h = float(f[a])
        if not (0.0 <= h < 4294967296.0) or h != math.floor(h):
            return False, {"bucket": None}
        bucket = bucket_of(int(h), int(k[b]))
        return k[b + 1] <= bucket < k[b + 2], {"bucket": bucket}
    if op == abi.OP_SEGMENT:
        return bool((int(bits[a >> 6]) >> (a & 63)) & 1), {}
    return False, {}


def evaluate(program: Program, features: F64, now: float, out: U64) -> None:
    """Membership bitset of one profile into `out` (uint64[program.words])."""
    out[:] = 0
    code = program.code
    pc, n = 0, code.shape[0]
    while pc < n:
        if code[pc, abi.OP] == abi.OP_SET:
            bit = int(code[pc, abi.A])
            out[bit >> 6] |= np.uint64(1 << (bit & 63))
            pc += 1
            continue
        ok, _ = leaf(program, pc, features, now, out)
        pc = int(code[pc, abi.JT] if ok else code[pc, abi.JF])


def evaluate_batch(program: Program, block: F64, now: float, out: U64) -> None:
    for i in range(block.shape[0]):
        evaluate(program, block[i], now, out[i])


def next_change(program: Program, features: F64, now: float) -> float:
    """Earliest instant after `now` at which a time condition of any segment may flip."""
    code = program.code
    best = INF
    today = today_of(now)
    f32 = features.view(np.float32)
    k = program.consts
    for pc in range(code.shape[0]):
        op, _, a, b, c, _ = (int(v) for v in code[pc, :6])
        t = INF
        if op == abi.OP_AGE:
            x = float(features[a])
            if _present(x) and now < x + k[b]:
                t = x + k[b]
        elif op == abi.OP_ANNIV:
            t = _anniversary_change(float(features[a]), c, today)
        elif op in (abi.OP_WINDOW, abi.OP_WINDOW_REF):
            t = _window_change(program, pc, f32, today)
        best = min(best, t)
    return best


def _anniversary_change(x: float, days: int, today: int) -> float:
    v0, cand = anniversary(x, days, today)
    day = today
    v, c = v0, cand
    for _ in range(4):
        nxt = c + 1 if v else c - days + 1
        if nxt <= day:
            return INF
        v, c = anniversary(x, days, nxt)
        day = nxt
        if v != v0:
            return float(day * DAY_SECONDS)
    return INF


def _window_change(program: Program, pc: int, f32: npt.NDArray[np.float32], today: int) -> float:
    op, cmp, a, b, c, d = (int(v) for v in program.code[pc, :6])
    k = program.consts
    span = c + d
    if op == abi.OP_WINDOW_REF:
        span = max(span, int(k[b + 1]) + int(k[b + 2]))

    def value(day: int) -> bool:
        s = window_sum(f32, a, c, d, day)
        if op == abi.OP_WINDOW:
            return compare(s, cmp, k[b], k[b + 1] if cmp == abi.BETWEEN else 0.0)
        r = window_sum(f32, int(k[b]), int(k[b + 1]), int(k[b + 2]), day)
        return compare(s, cmp, k[b + 3] * r, 0.0)

    v0 = value(today)
    for step in range(1, span + 2):
        if value(today + step) != v0:
            return float((today + step) * DAY_SECONDS)
    return INF


def explain(program: Program, features: F64, now: float) -> list[dict[str, Any]]:
    """Per segment (bit order): matched or not, the clause that decided it, the values seen.

    Rows run exactly as in `evaluate`; `trace` lists every test that ran for the
    segment, with the values it compared. `decided_by` is the last test that ran: for
    an `all` that failed it is the first clause that failed, for an `any` that matched
    the first clause that held.
    """
    code = program.code
    bits = np.zeros(program.words, dtype=np.uint64)
    result: dict[int, dict[str, Any]] = {}
    start = 0
    for end in range(code.shape[0]):
        if code[end, abi.OP] != abi.OP_SET:
            continue
        bit = int(code[end, abi.A])
        trace: list[dict[str, Any]] = []
        pc = start
        while pc < end:
            ok, seen = leaf(program, pc, features, now, bits)
            clause = program.clauses[pc]
            assert clause is not None
            trace.append(
                {
                    "path": clause.path,
                    "op": abi.OP_NAMES[int(code[pc, abi.OP])],
                    "result": ok,
                    **{k: _json(v) for k, v in seen.items()},
                }
            )
            pc = int(code[pc, abi.JT] if ok else code[pc, abi.JF])
        matched = pc == end
        if matched:
            bits[bit >> 6] |= np.uint64(1 << (bit & 63))
        result[bit] = {
            "segment": program.segment_ids[bit],
            "matched": matched,
            "decided_by": trace[-1] if trace else None,
            "trace": trace,
        }
        start = end + 1
    return [result[i] for i in range(len(program.segment_ids))]


def _json(value: Any) -> Any:
    """NaN (a missing value) as None, so explanations are plain JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value
