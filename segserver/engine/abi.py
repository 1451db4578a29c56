"""The rule-program ABI: what the kernels, the pure-Python twin and the compiler share.

A program is two arrays:

* `code`, int64 of shape (n, 8): one row per instruction, columns `OP CMP A B C D JT JF`;
* `consts`, float64: the constants the rows point into (column B is an offset).

It is a *branching program*: every test row has two successors, `JT` when it holds and
`JF` when it does not, and every jump goes forward. Each segment is a run of test rows
ending in one `SET` row; a segment's rule reaches the `SET` row (its bit is set) or
jumps past it (to the next segment's first row). `all`/`any`/`not` cost nothing at
run time: they are the wiring of the jumps (`not` swaps JT and JF), so the single
profile kernel evaluates only the tests it needs (short-circuit). The batch kernel
runs the same rows over a block of profiles, propagating "which profiles reach this
row" masks along JT/JF, one row over the whole block at a time.

Segments are laid out in dependency order, so a `SEGMENT` row reads a bit that is
already final. Missing values are NaN; every test on a missing value is false.
"""

from __future__ import annotations

WIDTH = 8
OP, CMP, A, B, C, D, JT, JF = range(WIDTH)

# Opcodes. Column meanings are given as A, B, C, D; B is always an offset into consts.
OP_SET = 0  # A: segment bit. Ends a segment.
OP_CONST = 1  # CMP: 1 true, 0 false
OP_CMP = 2  # A: feature index; B: k0[, k1]; f[A] CMP k0 (between: k0 <= x <= k1)
OP_IN = 3  # A: feature; B, C: sorted set; CMP 0 in, 1 not in (present and not in)
OP_TAGS = 4  # A: first slot, D: slots; B, C: set of codes; CMP 0 any, 1 all, 2 none
OP_EXISTS = 5  # A: first slot, D: slots; CMP 0 exists, 1 missing
OP_AGE = 6  # A: instant; B: seconds; CMP 0 within (now - x < s), 1 older (now - x >= s)
OP_ANNIV = 7  # A: date; C: days; month-day of f[A] falls in [today, today + C)
OP_WINDOW = 8  # A: window (float32 index); C: days; D: offset days; B: (k0, k1, spec)
OP_WINDOW_REF = 9  # A, C, D as OP_WINDOW; B: right (f32 index, days, offset), factor,
#                  spec of the left window, spec of the right. A spec numbers each distinct
#                  (window, days, offset) of the program: the batch kernel sums it once.
OP_REF = 10  # A: left; C: right; B: factor; f[A] CMP factor * f[C]
OP_RATIO = 11  # A: numerator; C: denominator; B: k0[, k1]; no match when f[C] == 0
OP_BUCKET = 12  # A: id-hash slot; B: (salt hash, lo, hi); lo <= bucket < hi
OP_SEGMENT = 13  # A: bit of an earlier segment

OP_NAMES = (
    "set",
    "const",
    "cmp",
    "in",
    "tags",
    "exists",
    "age",
    "anniversary",
    "window",
    "window_ref",
    "ref",
    "ratio",
    "bucket",
    "segment",
)

# Comparison codes (column CMP of OP_CMP, OP_WINDOW, OP_WINDOW_REF, OP_REF, OP_RATIO).
EQ, NE, GT, GE, LT, LE, BETWEEN = range(7)
CMP_CODES = {"eq": EQ, "ne": NE, "gt": GT, "gte": GE, "lt": LT, "lte": LE, "between": BETWEEN}

TAGS_ANY, TAGS_ALL, TAGS_NONE = range(3)
TAG_CODES = {"has_any": TAGS_ANY, "has_all": TAGS_ALL, "has_none": TAGS_NONE}

#: Profiles per block in the batch kernel (64-512 measured alike within noise; one
#: uint64 mask per row instead of a byte per profile measured slower).
BLOCK = 256
