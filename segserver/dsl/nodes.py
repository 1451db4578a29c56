"""The validated rule tree (AST) that `segserver.dsl.validate` builds from rule JSON.

Values are already normalised: instants are epoch seconds (UTC), durations are
seconds, windows are whole days, bucket bounds are units of 1/10 000. Strings of
category and tag attributes stay strings here; the engine resolves them to
dictionary codes when it lowers the tree to a rule program.
"""

from __future__ import annotations

from dataclasses import dataclass

from segserver.profile.schema import Attribute

#: Comparison operators shared by scalar, reference, ratio and window leaves.
COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
#: Operators of category attributes that are resolved to sets of codes.
STRING_OPS = ("eq", "ne", "in", "not_in", "ieq", "starts_with", "ends_with", "contains")
TAG_OPS = ("has_any", "has_all", "has_none")


@dataclass(frozen=True, slots=True)
class Group:
    """`all` (every child) or `any` (at least one child); never empty."""

    kind: str  # "all" | "any"
    children: tuple[Node, ...]
    path: str


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    path: str


@dataclass(frozen=True, slots=True)
class Const:
    value: bool
    path: str


@dataclass(frozen=True, slots=True)
class Compare:
    """A number, instant or flag attribute against constants (`between`: two)."""

    attr: Attribute
    op: str  # one of COMPARISONS, or "in" / "not_in"
    values: tuple[float, ...]
    path: str


@dataclass(frozen=True, slots=True)
class Strings:
    """A category attribute against strings; resolved to a set of codes when lowered."""

    attr: Attribute
    op: str  # one of STRING_OPS
    values: tuple[str, ...]
    path: str


@dataclass(frozen=True, slots=True)
class Tags:
    attr: Attribute
    op: str  # one of TAG_OPS
    values: tuple[str, ...]
    path: str


@dataclass(frozen=True, slots=True)
class Presence:
    attr: Attribute
    op: str  # "exists" | "missing"
    path: str


@dataclass(frozen=True, slots=True)
class Age:
    """`within` (age < seconds) or `older_than` (age >= seconds) of an instant."""

    attr: Attribute
    op: str  # "within" | "older_than"
    seconds: float
    path: str


@dataclass(frozen=True, slots=True)
class Anniversary:
    """The attribute's month and day fall within the next `days` days (today counts)."""

    attr: Attribute
    days: int
    path: str


@dataclass(frozen=True, slots=True)
class Window:
    """Sum of a daily counter over `days` UTC days ending `offset` days before today."""

    attr: Attribute
    days: int
    offset: int


@dataclass(frozen=True, slots=True)
class WindowCompare:
    left: Window
    op: str  # one of COMPARISONS
    values: tuple[float, ...]  # constants, or () when `right` is set
    right: Window | None
    factor: float
    path: str


@dataclass(frozen=True, slots=True)
class RefCompare:
    """Attribute against attribute: `left op factor * right`; both must be present."""

    left: Attribute
    op: str  # eq ne gt gte lt lte
    right: Attribute
    factor: float
    path: str


@dataclass(frozen=True, slots=True)
class Ratio:
    """`num / den op values`; no match when either is missing or den is 0."""

    num: Attribute
    den: Attribute
    op: str  # one of COMPARISONS
    values: tuple[float, ...]
    path: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """Deterministic percentage bucket: lo <= bucket < hi, in units of 1/10 000."""

    lo: int
    hi: int
    salt: str | None  # None: the segment's salt
    path: str


@dataclass(frozen=True, slots=True)
class SegmentRef:
    segment: str
    path: str


Node = (
    Group
    | Not
    | Const
    | Compare
    | Strings
    | Tags
    | Presence
    | Age
    | Anniversary
    | WindowCompare
    | RefCompare
    | Ratio
    | Bucket
    | SegmentRef
)


def segment_refs(node: Node) -> set[str]:
    """Ids of every segment the tree refers to."""
    if isinstance(node, Group):
        found: set[str] = set()
        for child in node.children:
            found |= segment_refs(child)
        return found
    if isinstance(node, Not):
        return segment_refs(node.child)
    if isinstance(node, SegmentRef):
        return {node.segment}
    return set()


def has_time(node: Node) -> bool:
    """Does the tree test time (an age, an anniversary or a daily window)? Its result
    may then change without an event, at instants `engine.next_change` finds."""
    if isinstance(node, Group):
        return any(has_time(child) for child in node.children)
    if isinstance(node, Not):
        return has_time(node.child)
    return isinstance(node, Age | Anniversary | WindowCompare)
