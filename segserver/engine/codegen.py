"""Python source of a batch kernel specialised to one rule program (Numba compiles it).

The interpreter (`batch`) walks the program's rows for every block of profiles; here
the rows become straight-line code with their constants as literals, and whole
segments are fused into one loop over the block that LLVM vectorises:

    for each block of BLOCK profiles:
        copy the scalar features the program reads into contiguous columns
        fill one column per distinct window sum, tag set, anniversary, bucket and
        large set test (`genlib` helpers)
        for each run of segments (about CHUNK_ROWS rows): one function,
            for p in block:  straight-line boolean code → the segments' bits
        copy the block's bits into `out`

A segment's branching program becomes boolean algebra: the reach of every row is
the OR over its incoming jumps of (reach of the source AND the source's outcome),
and the segment holds when its SET row is reached. Every test is total (no
exceptions, a missing value is no match), so evaluating a test that the interpreter
would have skipped changes nothing but time.

Only the validated program goes in: opcodes and feature indexes as integers,
constants as float literals (`repr`, which round-trips exactly), large sets read from
the constant array. No text a user wrote reaches the source; every float literal is
checked against a numeric pattern (and tests/unit/test_engine_generated.py parses the
source and finds no other constant than numbers).

Numba's compile time grows with the operators it types (measured: 20 segments ~4-10 s,
100 ~15-50 s, 1 000 ~150 s on the 2-vCPU VM, busy), hence the helpers for tests that
would need dozens of operators inline (tags, large sets) and one function per run of
segments.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from segserver.engine import abi
from segserver.engine.abi import BETWEEN, EQ, GE, GT, LE, LT, NE

#: Bumped whenever the generated code changes meaning or shape (part of the content hash).
GEN_VERSION = 1
#: Profiles per block: the columns of a block stay in L1/L2 (256 × 8 B = 2 KB each).
BLOCK = 256
#: Test rows fused into one loop over the block (one function each). Measured on 100
#: generated segments: 48 rows compiled in 19 s, 128 in 16 s; 512 ran slower (1.23
#: against 0.88 ns per profile·segment: register spills).
CHUNK_ROWS = 128
#: Sets larger than this are tested by binary search over the constant array.
INLINE_SET = 4

_NUMBER = re.compile(r"-?(\d+\.\d*|\d+)(e[+-]?\d+)?")


def content_hash(code: npt.NDArray[np.int64], consts: npt.NDArray[np.float64], words: int) -> str:
    """The program's identity for generated code: generator version, rows, constants."""
    h = hashlib.sha256(f"segserver-gen:{GEN_VERSION}:{code.shape[0]}:{words}:".encode())
    h.update(np.ascontiguousarray(code, dtype="<i8").tobytes())
    h.update(b":")
    h.update(np.ascontiguousarray(consts, dtype="<f8").tobytes())
    return h.hexdigest()[:32]


def _num(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return "math.nan"
    if math.isinf(x):
        return "math.inf" if x > 0 else "(-math.inf)"
    text = repr(x)
    if not _NUMBER.fullmatch(text):  # pragma: no cover - repr of a finite float
        raise ValueError(f"codegen: unexpected float literal {text!r}")
    return f"({text})" if text.startswith("-") else text


def _int(i: int | np.integer) -> str:
    return str(int(i))


def _cmp(x: str, cmp: int, k0: str, k1: str) -> str:
    """The interpreter's `compare(x, cmp, k0, k1)` as an expression (false on NaN)."""
    if cmp == GT:
        return f"({x} > {k0})"
    if cmp == GE:
        return f"({x} >= {k0})"
    if cmp == LT:
        return f"({x} < {k0})"
    if cmp == LE:
        return f"({x} <= {k0})"
    if cmp == EQ:
        return f"({x} == {k0})"
    if cmp == NE:
        return f"(({x} != {k0}) & ({x} == {x}))"
    if cmp == BETWEEN:
        return f"(({k0} <= {x}) & ({x} <= {k1}))"
    return "False"


def _any(terms: list[str]) -> str:
    return "(" + " | ".join(terms) + ")" if terms else "False"


def _all(terms: list[str]) -> str:
    return "(" + " & ".join(terms) + ")" if terms else "True"


@dataclass
class _Chunk:
    segments: list[tuple[int, int]] = field(default_factory=list)  # (first row, SET row)
    rows: int = 0


class _Source:
    def __init__(
        self, code: npt.NDArray[np.int64], consts: npt.NDArray[np.float64], words: int
    ) -> None:
        self.code = code
        self.k = consts
        self.words = words
        self.columns: dict[int, int] = {}  # feature index → column number
        self.windows: dict[tuple[int, int, int], int] = {}
        # boolean columns filled per block by a `genlib` helper: (helper, its arguments)
        self.flags: dict[tuple[str, *tuple[int | float, ...]], int] = {}
        self.tagmasks: dict[tuple[int, int], int] = {}
        #: bits that a SEGMENT row reads
        self.referenced = {int(r[abi.A]) for r in code if r[abi.OP] == abi.OP_SEGMENT}

    # -- what the rows need -------------------------------------------------------------

    def column(self, feature: int) -> str:
        j = self.columns.setdefault(int(feature), len(self.columns))
        return f"x{j}"

    def window(self, wi: int, days: int, offset: int) -> str:
        j = self.windows.setdefault((int(wi), int(days), int(offset)), len(self.windows))
        return f"w{j}[p]"

    def tagmask(self, a: int, d: int) -> str:
        """The tags of slots a .. a+d as a bit mask per profile (`genlib.tagmask_block`):
        bit t for code t in 0 .. 62, bit 63 for any other value. A tag test is then one
        AND and a compare, and vectorises."""
        j = self.tagmasks.setdefault((int(a), int(d)), len(self.tagmasks))
        return f"tm{j}[p]"

    def flag(self, helper: str, *args: int | float) -> str:
        """A test filled per block by `genlib.<helper>_block` (one per distinct test): tests
        over many slots or values cost dozens of operators inline, and Numba's compile
        time grows with operators."""
        j = self.flags.setdefault((helper, *args), len(self.flags))
        return f"f{j}[p]"

    def test(self, pc: int, segment_bits: dict[int, str]) -> str:
        """Row `pc`'s outcome for profile p, as an expression over the loop's locals."""
        op, cmp, a, b, c, d = (int(v) for v in self.code[pc, :6])
        k = self.k

        def kk(i: int) -> str:
            return _num(k[i])

        x: Callable[[int], str] = self.column
        if op == abi.OP_CONST:
            return "True" if cmp == 1 else "False"
        if op == abi.OP_CMP:
            return _cmp(x(a), cmp, kk(b), kk(b + 1) if cmp == BETWEEN else "0.0")
        if op == abi.OP_IN:
            if c > INLINE_SET:
                return self.flag("in", a, b, c, cmp)
            xa = x(a)
            inside = _any([f"({xa} == {kk(b + i)})" for i in range(c)])  # NaN equals nothing
            return f"(({xa} == {xa}) & ({inside} ^ True))" if cmp == 1 else inside
        if op == abi.OP_EXISTS:
            if d > 1:  # a tags attribute: present when any slot is
                return (
                    f"({self.tagmask(a, d)} == 0)" if cmp == 1 else f"({self.tagmask(a, d)} != 0)"
                )
            return f"({x(a)} != {x(a)})" if cmp == 1 else f"({x(a)} == {x(a)})"
        if op == abi.OP_AGE:
            op_text = "<" if cmp == 0 else ">="
            return f"((now - {x(a)}) {op_text} {kk(b)})"
        if op == abi.OP_TAGS:
            codes = [float(v) for v in k[b : b + c]]
            if not all(v.is_integer() and 0 <= v < 63 for v in codes):
                return self.flag("tags", a, d, b, c, cmp)
            mask = self.tagmask(a, d)
            want = sum(1 << int(v) for v in set(codes))
            if cmp == abi.TAGS_ANY:
                return f"(({mask} & {want}) != 0)"
            if cmp == abi.TAGS_ALL:
                return f"(({mask} != 0) & (({mask} & {want}) == {want}))"
            return f"(({mask} != 0) & (({mask} & {want}) == 0))"
        if op == abi.OP_WINDOW:
            s = self.window(a, c, d)
            return _cmp(s, cmp, kk(b), kk(b + 1))
        if op == abi.OP_WINDOW_REF:
            s = self.window(a, c, d)
            r = self.window(int(k[b]), int(k[b + 1]), int(k[b + 2]))
            return _cmp(s, cmp, f"({kk(b + 3)} * {r})", "0.0")
        if op == abi.OP_REF:
            xa, yc = x(a), x(c)
            return (
                f"(({xa} == {xa}) & ({yc} == {yc}) & {_cmp(xa, cmp, f'({kk(b)} * {yc})', '0.0')})"
            )
        if op == abi.OP_RATIO:
            xa, yc = x(a), x(c)
            ratio = _cmp(f"({xa} / {yc})", cmp, kk(b), kk(b + 1) if cmp == BETWEEN else "0.0")
            return f"(({xa} == {xa}) & ({yc} == {yc}) & ({yc} != 0.0) & {ratio})"
        if op == abi.OP_ANNIV:
            return self.flag("anniversary", a, c)
        if op == abi.OP_BUCKET:
            return self.flag("bucket", a, int(k[b]), float(k[b + 1]), float(k[b + 2]))
        if op == abi.OP_SEGMENT:
            if segment_bits.get(a):
                return segment_bits[a]
            return (
                f"(((acc{_int(a >> 6)}[p] >> np.uint64({_int(a & 63)})) & np.uint64(1)) "
                "== np.uint64(1))"
            )
        return "False"

    # -- the segments ------------------------------------------------------------------

    def segment(self, s0: int, s1: int, out: list[str], done: dict[int, str]) -> None:
        """Lines computing segment rows s0 .. s1 (its SET row) into `m<bit>`, `a<word>`.

        Reach and outcomes stay expressions while used once (an `all` chain becomes one
        conjunction); a name is bound only for a value used twice. Numba's typing and
        lowering cost grows with statements, not with operators (measured).
        """
        code = self.code
        incoming: dict[int, list[str]] = {}
        for pc in range(s0, s1):
            terms = incoming.pop(pc, None)
            if pc == s0:
                here = "True"
            elif not terms:
                continue  # no jump leads here
            else:
                here = terms[0] if len(terms) == 1 else "(" + " | ".join(terms) + ")"
            targets = [int(code[pc, abi.JT]), int(code[pc, abi.JF])]
            live = [t <= s1 for t in targets]  # past the SET row: no match on that path
            test = self.test(pc, done)
            if all(live):
                if here != "True" and not here.isidentifier():
                    out.append(f"r{pc} = {here}")
                    here = f"r{pc}"
                out.append(f"t{pc} = {test}")
                test = f"t{pc}"
            for target, is_live, value in zip(
                targets, live, (test, f"({test} ^ True)"), strict=True
            ):
                if is_live:
                    term = value if here == "True" else f"({here} & {value})"
                    incoming.setdefault(target, []).append(term)
        final = incoming.get(s1, [])
        bit = int(code[s1, abi.A])
        match = "False" if not final else final[0] if len(final) == 1 else " | ".join(final)
        if bit in self.referenced:  # a later segment of this run reads it
            out.append(f"m{bit} = {match}")
            match = f"m{bit}"
            done[bit] = match
        else:
            done[bit] = ""
        # int64 accumulators (bit 63 wraps to the sign bit), one uint64 cast per word
        out.append(f"a{bit >> 6} |= ({match}) << {bit & 63}")

    def chunks(self) -> list[_Chunk]:
        found: list[_Chunk] = [_Chunk()]
        s0 = 0
        for pc in range(self.code.shape[0]):
            if self.code[pc, abi.OP] != abi.OP_SET:
                continue
            if found[-1].rows >= CHUNK_ROWS:
                found.append(_Chunk())
            found[-1].segments.append((s0, pc))
            found[-1].rows += pc - s0 + 1
            s0 = pc + 1
        return [c for c in found if c.segments]

    def render(self) -> str:
        """The module body: one function per run of segments, then `run`.

        Every column is its own 1-D array (one 2-D array of columns measured 2× slower:
        LLVM then cannot tell the gather's stores from the tests' loads).
        """
        funcs: list[str] = []
        calls: list[str] = []
        for i, chunk in enumerate(self.chunks()):
            body: list[str] = []
            done: dict[int, str] = {}
            for s0, s1 in chunk.segments:
                self.segment(s0, s1, body, done)
            text = "\n".join(body)
            touched = sorted({bit >> 6 for bit in done})
            cols = sorted({int(j) for j in re.findall(r"\bx(\d+)\b", text)})
            arrays = sorted(
                {f"{kind}{j}" for kind, j in re.findall(r"\b(w|f|tm|acc)(\d+)\[p\]", text)}
                | {f"acc{w}" for w in touched}
                | {f"c{j}" for j in cols},
                key=_natural,
            )
            args = ", ".join(["now", "k", *arrays])
            funcs.append(
                "\n".join(
                    [
                        "@jit",
                        f"def chunk{i}({args}):",
                        # every lane of the block, also past `cnt` (stale values, never
                        # written out): a constant trip count needs no scalar epilogue,
                        # half the machine code to compile
                        "    for p in range(BLOCK):",
                        *[f"        a{w} = 0" for w in touched],
                        *[f"        x{j} = c{j}[p]" for j in cols],
                        *[f"        {line}" for line in body],
                        *[f"        acc{w}[p] |= np.uint64(a{w})" for w in touched],
                    ]
                )
            )
            calls.append(f"        chunk{i}({args})")
        ln: list[str] = []
        emit = ln.append
        emit("@jit")
        emit("def run(block, now, out, k):")
        emit("    n = block.shape[0]")
        emit("    f32b = block.view(np.float32)")
        emit("    today = today_of(now)")
        for j in range(len(self.columns)):
            emit(f"    c{j} = np.zeros(BLOCK, dtype=np.float64)")
        for j in range(len(self.windows)):
            emit(f"    w{j} = np.zeros(BLOCK, dtype=np.float64)")
        for j in range(len(self.flags)):
            emit(f"    f{j} = np.zeros(BLOCK, dtype=np.bool_)")
        for j in range(len(self.tagmasks)):
            emit(f"    tm{j} = np.zeros(BLOCK, dtype=np.int64)")
        for w in range(self.words):
            emit(f"    acc{w} = np.empty(BLOCK, dtype=np.uint64)")
        emit("    for start in range(0, n, BLOCK):")
        emit("        cnt = min(BLOCK, n - start)")
        if self.columns:
            emit("        for p in range(cnt):")
            emit("            row = start + p")
            # in memory order: the hardware prefetcher follows ascending addresses
            for feature, j in sorted(self.columns.items()):
                emit(f"            c{j}[p] = block[row, {_int(feature)}]")
        for (wi, days, offset), j in self.windows.items():
            emit(
                f"        window_block(f32b, start, cnt, {_int(wi)}, {_int(days)}, "
                f"{_int(offset)}, today, w{j})"
            )
        for (a, d), j in self.tagmasks.items():
            emit(f"        tagmask_block(block, start, cnt, {_int(a)}, {_int(d)}, tm{j})")
        for (helper, *params), j in self.flags.items():
            values = ", ".join(_int(v) if isinstance(v, int) else _num(v) for v in params)
            source = "f32b" if helper == "window" else "block"
            emit(f"        {helper}_block({source}, start, cnt, {values}, k, today, f{j})")
        for w in range(self.words):
            emit(f"        acc{w}[:] = 0")
        ln.extend(calls)
        emit("        for p in range(cnt):")
        emit("            row = start + p")
        for w in range(self.words):
            emit(f"            out[row, {w}] = acc{w}[p]")
        emit(f"            for w in range({_int(self.words)}, out.shape[1]):")
        emit("                out[row, w] = 0")
        return "\n\n\n".join([*funcs, "\n".join(ln)])


def _natural(name: str) -> tuple[str, int]:
    head = name.rstrip("0123456789")
    return head, int(name[len(head) :])


HEADER = '''"""Generated by segserver.engine.codegen (version {version}) for program {digest}.

Do not edit: it is regenerated from the rule program and compiled by Numba.
"""

import math

import numpy as np

from segserver.engine.genlib import (
    anniversary_block,
    bucket_block,
    in_block,
    jit,
    tagmask_block,
    tags_block,
    window_block,
)
from segserver.engine.kernels import in_sorted, today_of

BLOCK = {block}

'''


def source(code: npt.NDArray[np.int64], consts: npt.NDArray[np.float64], words: int) -> str:
    """The module text of the generated batch kernel `run(block, now, out, k)`.

    `block` is float64[N, F] (C order), `out` uint64[N, >= words], `k` the program's
    constants; the function writes every row's bitset into `out` like `batch.eval_batch`.
    """
    digest = content_hash(code, consts, words)
    body = _Source(code, consts, words).render()
    return HEADER.format(version=GEN_VERSION, digest=digest, block=BLOCK) + body + "\n"
