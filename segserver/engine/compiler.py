"""Validated rule trees → one rule program for a set of segments (see `abi`).

Building a site's program is pure Python over small lists (milliseconds for hundreds
of segments) and never compiles machine code: the kernels are fixed and interpret
any program, so adding or editing a segment never waits for a JIT.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.dsl import nodes as n
from segserver.dsl.validate import parse_rule
from segserver.engine import abi
from segserver.engine.codegen import content_hash
from segserver.engine.hashing import salt_hash
from segserver.engine.timing import time_tests
from segserver.engine.wide import Tables as WideTables
from segserver.engine.wide import build_tables
from segserver.errors import RuleError
from segserver.profile.schema import H_IDHASH, Layout
from segserver.profile.vocabulary import Vocabulary


@dataclass(frozen=True, slots=True)
class SegmentDef:
    """A segment as the engine needs it: id, rule JSON, priority and bucket salt."""

    id: str
    rule: Mapping[str, Any]
    priority: int = 0
    salt: str | None = None  # bucket salt; None: the id


@dataclass(frozen=True, slots=True)
class Clause:
    """What one code row tests, for explanations: the segment and the rule's JSON path."""

    segment: str
    path: str
    node: n.Node


@dataclass(frozen=True, eq=False, slots=True)
class Program:
    """A compiled set of segments. Bit i of the membership bitset is `segment_ids[i]`."""

    segment_ids: tuple[str, ...]
    priorities: tuple[int, ...]
    code: npt.NDArray[np.int64]
    consts: npt.NDArray[np.float64]
    words: int
    n_features: int  # the shortest feature vector the program may read
    clauses: tuple[Clause | None, ...]  # per code row; None for SET rows
    rules: tuple[Mapping[str, Any], ...]  # per bit, as given (for explanations)
    order: tuple[int, ...]  # segment bits in evaluation (dependency) order
    generation: int  # the vocabulary generation compiled against
    watch: Mapping[str, int] = field(default_factory=dict)  # attr → vocabulary size seen
    has_time: bool = False  # any time condition (within, windows, ...)?
    #: Rows of the distinct time tests, by kind (age, anniversary, window): the rows
    #: `next_change` visits. Segments often repeat a test ("page views in 7 days >= 5");
    #: its next change is the same, so it is worked out once.
    time_tests: tuple[npt.NDArray[np.int64], ...] = field(default_factory=tuple)
    #: Tables of the branch-free single-profile kernel for large programs (`wide`);
    #: None: the short-circuit interpreter evaluates it.
    wide: WideTables | None = None
    #: `codegen.content_hash` of code and constants: the identity of generated code
    #: (computed once here: bulk calls look it up per block).
    digest: str = ""

    def is_stale(self, vocab: Vocabulary) -> bool:
        """True when `vocab` gained values that a string operator of this program may match."""
        if vocab.generation == self.generation:
            return False
        for attr, size in self.watch.items():
            known = vocab.attributes.get(attr)
            if (0 if known is None else len(known)) != size:
                return True
        return False

    def bit(self, segment_id: str) -> int:
        return self.segment_ids.index(segment_id)


def compile_rule(
    rule: Any,
    layout: Layout,
    vocab: Vocabulary | None = None,
    known_segments: Collection[str] = (),
    *,
    segment_id: str | None = None,
) -> n.Node:
    """Validate one rule (RuleError naming the path); return its tree. No program is built.

    `vocab` is accepted for symmetry with `build_program` (string values unknown to
    the vocabulary are valid: they match nobody until they appear). A rule naming
    its own `segment_id` is a reference cycle.
    """
    del vocab
    node = parse_rule(rule, layout, known_segments)
    if segment_id is not None and segment_id in n.segment_refs(node):
        raise RuleError(f"rule: segment {segment_id!r} refers to itself (reference cycle)")
    return node


def build_program(segments: Sequence[SegmentDef], layout: Layout, vocab: Vocabulary) -> Program:
    """Validate every rule, order segments by dependency and lower them to one program."""
    ids = [s.id for s in segments]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise RuleError(f"segments: segment {dup!r} appears twice")
    known = set(ids)
    trees: dict[str, n.Node] = {}
    for seg in segments:
        try:
            trees[seg.id] = parse_rule(seg.rule, layout, known)
        except RuleError as exc:
            raise RuleError(
                f"{exc.message} (segment {seg.id!r})", details={"segment": seg.id}
            ) from None
    order = _dependency_order(ids, trees)
    lowering = _Lowering(layout, vocab, {sid: i for i, sid in enumerate(ids)})
    for bit in order:
        seg = segments[bit]
        lowering.segment(bit, seg.id, trees[seg.id], seg.salt or seg.id)
    code = np.ascontiguousarray(np.array(lowering.rows, dtype=np.int64).reshape(-1, abi.WIDTH))
    consts = np.array(lowering.consts, dtype=np.float64)
    words = max(1, (len(ids) + 63) // 64)
    return Program(
        segment_ids=tuple(ids),
        priorities=tuple(s.priority for s in segments),
        code=code,
        consts=consts,
        words=words,
        n_features=layout.size // 8,
        clauses=tuple(lowering.clauses),
        rules=tuple(s.rule for s in segments),
        order=tuple(order),
        generation=vocab.generation,
        watch=dict(lowering.watch),
        has_time=lowering.has_time,
        time_tests=time_tests(code, consts),
        wide=build_tables(code, consts),
        digest=content_hash(code, consts, words),
    )


def _dependency_order(ids: list[str], trees: Mapping[str, n.Node]) -> list[int]:
    """Bits in an order where every referenced segment comes first; RuleError on a cycle."""
    index = {sid: i for i, sid in enumerate(ids)}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    order: list[int] = []

    def visit(sid: str, chain: list[str]) -> None:
        if state.get(sid) == 2:
            return
        if state.get(sid) == 1:
            cycle = " → ".join([*chain[chain.index(sid) :], sid])
            raise RuleError(
                f"rule: reference cycle {cycle} (segment {chain[-1]!r})",
                details={"segment": chain[-1]},
            )
        state[sid] = 1
        for ref in sorted(n.segment_refs(trees[sid])):
            visit(ref, [*chain, sid])
        state[sid] = 2
        order.append(index[sid])

    for sid in ids:
        visit(sid, [])
    return order


class _Lowering:
    def __init__(self, layout: Layout, vocab: Vocabulary, bits: Mapping[str, int]) -> None:
        self.layout = layout
        self.vocab = vocab
        self.bits = bits
        self.rows: list[int] = []
        self.consts: list[float] = []
        self.clauses: list[Clause | None] = []
        self.watch: dict[str, int] = {}
        self.has_time = False
        self.labels: dict[int, int] = {}  # label → row
        self.segment_id = ""
        self.salt = ""
        self.next_label = 0
        self.windows: dict[tuple[int, int, int], int] = {}

    # Jump targets are labels until the segment is done; label ids are negative so they
    # cannot be mistaken for rows while patching.
    def label(self) -> int:
        self.next_label -= 1
        return self.next_label

    def segment(self, bit: int, segment_id: str, tree: n.Node, salt: str) -> None:
        self.segment_id, self.salt = segment_id, salt
        start = len(self.clauses)
        on_true, on_false = self.label(), self.label()
        self.node(tree, on_true, on_false)
        self.labels[on_true] = len(self.clauses)
        self.emit(abi.OP_SET, 0, bit, 0, 0, 0, None)
        self.labels[on_false] = len(self.clauses)
        for row in range(start, len(self.clauses)):
            for col in (abi.JT, abi.JF):
                k = row * abi.WIDTH + col
                if self.rows[k] < 0:
                    self.rows[k] = self.labels[self.rows[k]]
        self.rows[-2:] = [len(self.clauses), len(self.clauses)]  # SET falls through

    def node(self, node: n.Node, on_true: int, on_false: int) -> None:
        if isinstance(node, n.Group):
            last = len(node.children) - 1
            for i, child in enumerate(node.children):
                nxt = self.label()
                if node.kind == "all":
                    self.node(child, on_true if i == last else nxt, on_false)
                else:
                    self.node(child, on_true, on_false if i == last else nxt)
                self.labels[nxt] = len(self.clauses)
        elif isinstance(node, n.Not):
            self.node(node.child, on_false, on_true)
        else:
            self.leaf(node, on_true, on_false)

    def emit(
        self,
        op: int,
        cmp: int,
        a: int,
        b: int,
        c: int,
        d: int,
        node: n.Node | None,
        jt: int = 0,
        jf: int = 0,
    ) -> None:
        self.rows.extend((op, cmp, a, b, c, d, jt, jf))
        self.clauses.append(None if node is None else Clause(self.segment_id, node.path, node))

    def const(self, *values: float) -> int:
        at = len(self.consts)
        self.consts.extend(values)
        return at

    def leaf(self, node: n.Node, jt: int, jf: int) -> None:
        e = self.emit
        if isinstance(node, n.Const):
            e(abi.OP_CONST, int(node.value), 0, 0, 0, 0, node, jt, jf)
        elif isinstance(node, n.Compare):
            if node.op in ("in", "not_in"):
                values = sorted(set(node.values))
                e(
                    abi.OP_IN,
                    int(node.op == "not_in"),
                    node.attr.index,
                    self.const(*values),
                    len(values),
                    0,
                    node,
                    jt,
                    jf,
                )
            else:
                e(
                    abi.OP_CMP,
                    abi.CMP_CODES[node.op],
                    node.attr.index,
                    self.const(*node.values),
                    0,
                    0,
                    node,
                    jt,
                    jf,
                )
        elif isinstance(node, n.Strings):
            codes = sorted(self.codes(node))
            negate = node.op in ("ne", "not_in")
            e(
                abi.OP_IN,
                int(negate),
                node.attr.index,
                self.const(*codes),
                len(codes),
                0,
                node,
                jt,
                jf,
            )
        elif isinstance(node, n.Tags):
            known = self.known_codes(node.attr.name, node.values)
            if node.op == "has_all" and len(known) < len(set(node.values)):
                e(abi.OP_CONST, 0, 0, 0, 0, 0, node, jt, jf)  # nobody has an unknown tag yet
            else:
                codes = sorted(set(known))
                e(
                    abi.OP_TAGS,
                    abi.TAG_CODES[node.op],
                    node.attr.index,
                    self.const(*codes),
                    len(codes),
                    node.attr.slots,
                    node,
                    jt,
                    jf,
                )
        elif isinstance(node, n.Presence):
            e(
                abi.OP_EXISTS,
                int(node.op == "missing"),
                node.attr.index,
                0,
                0,
                node.attr.slots,
                node,
                jt,
                jf,
            )
        elif isinstance(node, n.Age):
            self.has_time = True
            e(
                abi.OP_AGE,
                int(node.op == "older_than"),
                node.attr.index,
                self.const(node.seconds),
                0,
                0,
                node,
                jt,
                jf,
            )
        elif isinstance(node, n.Anniversary):
            self.has_time = True
            e(abi.OP_ANNIV, 0, node.attr.index, 0, node.days, 0, node, jt, jf)
        elif isinstance(node, n.WindowCompare):
            self.has_time = True
            left = node.left
            wi = _window_index(left)
            spec = self.window_spec(wi, left.days, left.offset)
            if node.right is None:
                k1 = node.values[1] if len(node.values) > 1 else 0.0
                e(
                    abi.OP_WINDOW,
                    abi.CMP_CODES[node.op],
                    wi,
                    self.const(node.values[0], k1, spec),
                    left.days,
                    left.offset,
                    node,
                    jt,
                    jf,
                )
            else:
                r = node.right
                ri = _window_index(r)
                b = self.const(
                    ri, r.days, r.offset, node.factor, spec, self.window_spec(ri, r.days, r.offset)
                )
                e(
                    abi.OP_WINDOW_REF,
                    abi.CMP_CODES[node.op],
                    wi,
                    b,
                    left.days,
                    left.offset,
                    node,
                    jt,
                    jf,
                )
        elif isinstance(node, n.RefCompare):
            e(
                abi.OP_REF,
                abi.CMP_CODES[node.op],
                node.left.index,
                self.const(node.factor),
                node.right.index,
                0,
                node,
                jt,
                jf,
            )
        elif isinstance(node, n.Ratio):
            e(
                abi.OP_RATIO,
                abi.CMP_CODES[node.op],
                node.num.index,
                self.const(*node.values),
                node.den.index,
                0,
                node,
                jt,
                jf,
            )
        elif isinstance(node, n.Bucket):
            salt = salt_hash(node.salt or self.salt)
            e(abi.OP_BUCKET, 0, H_IDHASH, self.const(salt, node.lo, node.hi), 0, 0, node, jt, jf)
        elif isinstance(node, n.SegmentRef):
            e(abi.OP_SEGMENT, 0, self.bits[node.segment], 0, 0, 0, node, jt, jf)
        else:  # pragma: no cover - the validator builds no other node
            raise AssertionError(node)

    def window_spec(self, wi: int, days: int, offset: int) -> int:
        """A number per distinct (window, days, offset): the batch kernel sums each once."""
        return self.windows.setdefault((wi, days, offset), len(self.windows))

    def codes(self, node: n.Strings) -> set[int]:
        """The dictionary codes a string operator matches today."""
        if node.op in ("eq", "ne", "in", "not_in"):
            return set(self.known_codes(node.attr.name, node.values))
        self.watch_attr(node.attr.name)
        vocab = self.vocab.attributes.get(node.attr.name)
        if vocab is None:
            return set()
        want = node.values[0]
        folded = want.casefold()
        matches: Callable[[str], bool] = {
            "ieq": lambda v: v.casefold() == folded,
            "starts_with": lambda v: v.startswith(want),
            "ends_with": lambda v: v.endswith(want),
            "contains": lambda v: want in v,
        }[node.op]
        return {code for value, code in vocab.codes.items() if matches(value)}

    def known_codes(self, attr: str, values: Sequence[str]) -> list[int]:
        vocab = self.vocab.attributes.get(attr)
        codes = [] if vocab is None else [c for v in values if (c := vocab.code(v)) is not None]
        if len(codes) < len(set(values)):
            self.watch_attr(attr)  # an unknown value may appear later
        return codes

    def watch_attr(self, attr: str) -> None:
        vocab = self.vocab.attributes.get(attr)
        self.watch[attr] = 0 if vocab is None else len(vocab)


def _window_index(window: n.Window) -> int:
    wi = window.attr.window_index
    assert wi is not None  # the validator only builds windows of windowed attributes
    return wi
