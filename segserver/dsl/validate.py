"""Rule JSON → validated tree (`segserver.dsl.nodes`), strict, with the JSON path in errors.

Every malformed rule is rejected here, once, with a `RuleError` whose message starts
with the path of the offending value (`rule.all[2].value: "abc" is not a number`),
so nothing downstream re-checks or re-parses rule values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any

from segserver.dsl import nodes as n
from segserver.errors import RuleError
from segserver.profile.schema import DAY_SECONDS, WINDOW_DAYS, Attribute, Kind, Layout

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": DAY_SECONDS, "w": 7 * DAY_SECONDS}
DURATION_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhdw])$")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
#: Longest anniversary look-ahead (a year, leap or not).
MAX_ANNIVERSARY_DAYS = 366
#: Deepest nesting of all/any/not a rule may have (a JSON path names the offender):
#: rules are walked recursively when compiled and explained.
MAX_DEPTH = 24

_NODE_KEYS = ("all", "any", "not", "const", "segment", "bucket", "ratio", "attr")
_LEAF_FIELDS = {
    "attr": {"attr", "op", "value", "ref", "factor", "window", "offset"},
    "ratio": {"ratio", "op", "value"},
    "bucket": {"bucket", "salt"},
}
_INSTANT = (Kind.TIMESTAMP, Kind.DATE)
_SCALAR_CMP = ("eq", "ne", "gt", "gte", "lt", "lte")


def show(value: Any) -> str:
    """A value as it appeared in the JSON, for error messages."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def parse_rule(
    rule: Any,
    layout: Layout,
    known_segments: Collection[str] = (),
    path: str = "rule",
) -> n.Node:
    """Validate `rule` against `layout` and return its tree; raise RuleError naming the path."""
    return _Parser(layout, known_segments).node(rule, path)


class _Parser:
    def __init__(self, layout: Layout, known_segments: Collection[str]) -> None:
        self.layout = layout
        self.known = known_segments

    def node(self, rule: Any, path: str) -> n.Node:
        if path.count("[") + path.count(".not") > MAX_DEPTH:
            raise RuleError(f"{path}: rules nest at most {MAX_DEPTH} groups deep")
        if not isinstance(rule, Mapping):
            raise RuleError(f"{path}: a rule must be an object, not {show(rule)}")
        kinds = [k for k in _NODE_KEYS if k in rule]
        if not kinds:
            raise RuleError(f"{path}: a rule needs one of {', '.join(_NODE_KEYS)}")
        if len(kinds) > 1:
            raise RuleError(f"{path}: a rule has one of {kinds[0]!r} and {kinds[1]!r}, not both")
        kind = kinds[0]
        allowed = _LEAF_FIELDS.get(kind, {kind})
        for key in rule:
            if key not in allowed:
                raise RuleError(f"{path}.{key}: unknown field in a {kind!r} rule")
        if kind in ("all", "any"):
            return self.group(kind, rule[kind], path)
        if kind == "not":
            return n.Not(self.node(rule["not"], f"{path}.not"), path)
        if kind == "const":
            if not isinstance(rule["const"], bool):
                raise RuleError(f"{path}.const: {show(rule['const'])} is not true or false")
            return n.Const(rule["const"], path)
        if kind == "segment":
            return self.segment(rule["segment"], f"{path}.segment")
        if kind == "bucket":
            return self.bucket(rule, path)
        if kind == "ratio":
            return self.ratio(rule, path)
        return self.attr_rule(rule, path)

    def group(self, kind: str, children: Any, path: str) -> n.Group:
        if not isinstance(children, list):
            raise RuleError(f"{path}.{kind}: must be a list of rules")
        if not children:
            raise RuleError(f"{path}.{kind}: an empty group matches nothing useful; add a rule")
        return n.Group(
            kind,
            tuple(self.node(c, f"{path}.{kind}[{i}]") for i, c in enumerate(children)),
            path,
        )

    def segment(self, value: Any, path: str) -> n.SegmentRef:
        if not isinstance(value, str) or not value:
            raise RuleError(f"{path}: {show(value)} is not a segment id")
        if value not in self.known:
            raise RuleError(f"{path}: unknown segment {show(value)}")
        return n.SegmentRef(value, path[: -len(".segment")])

    def bucket(self, rule: Mapping[str, Any], path: str) -> n.Bucket:
        value = rule["bucket"]
        bpath = f"{path}.bucket"
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(f"{bpath}: must be [from, to] in percent, e.g. [0, 10]")
        lo, hi = (self.percent(v, f"{bpath}[{i}]") for i, v in enumerate(value))
        if not lo < hi:
            raise RuleError(f"{bpath}: needs from < to, got {show(value)}")
        salt = rule.get("salt")
        if salt is not None and (not isinstance(salt, str) or not salt):
            raise RuleError(f"{path}.salt: {show(salt)} is not a non-empty string")
        return n.Bucket(lo, hi, salt, path)

    def percent(self, value: Any, path: str) -> int:
        x = self.number(value, path)
        units = round(x * 100)
        if not 0 <= x <= 100 or abs(units - x * 100) > 1e-6:
            raise RuleError(f"{path}: {show(value)} is not a percentage 0-100 in steps of 0.01")
        return units

    def ratio(self, rule: Mapping[str, Any], path: str) -> n.Ratio:
        pair = rule["ratio"]
        if not isinstance(pair, list) or len(pair) != 2:
            raise RuleError(f"{path}.ratio: must be [numerator, denominator] attribute names")
        num, den = (
            self.attribute(a, f"{path}.ratio[{i}]", (Kind.NUMBER,)) for i, a in enumerate(pair)
        )
        op = self.op(rule, path, n.COMPARISONS)
        return n.Ratio(num, den, op, self.numbers_for(op, rule, path), path)

    def attr_rule(self, rule: Mapping[str, Any], path: str) -> n.Node:
        attr = self.attribute(rule["attr"], f"{path}.attr", None)
        if "window" in rule:
            return self.window_rule(attr, rule, path)
        if "offset" in rule:
            raise RuleError(f'{path}.offset: only a windowed rule (with "window") has an offset')
        if "ref" in rule:
            return self.ref_rule(attr, rule, path)
        if "factor" in rule:
            raise RuleError(f'{path}.factor: only a comparison with "ref" has a factor')
        kind = attr.kind
        op = self.op(rule, path, None)
        if op in ("exists", "missing"):
            self.no_value(rule, path, op)
            return n.Presence(attr, op, path)
        allowed = _OPS[kind]
        if op not in allowed:
            raise RuleError(
                f"{path}.op: {show(op)} does not apply to {kind.value} attribute "
                f"{attr.name!r} (use one of {', '.join(allowed)})"
            )
        if "value" not in rule:
            raise RuleError(f"{path}.value: missing (operator {op!r} compares with a value)")
        value, vpath = rule["value"], f"{path}.value"
        if kind is Kind.CATEGORY:
            if op in ("in", "not_in"):
                return n.Strings(attr, op, self.strings(value, vpath), path)
            return n.Strings(attr, op, (self.string(value, vpath),), path)
        if kind is Kind.TAGS:
            values = (
                self.strings(value, vpath)
                if isinstance(value, list)
                else (self.string(value, vpath),)
            )
            return n.Tags(attr, op, values, path)
        if kind is Kind.FLAG:
            if not isinstance(value, bool):
                raise RuleError(f"{vpath}: {show(value)} is not true or false")
            return n.Compare(attr, op, (1.0 if value else 0.0,), path)
        if op in ("within", "older_than"):
            return n.Age(attr, op, self.duration(value, vpath), path)
        if op == "anniversary_within":
            days = self.days(value, vpath, MAX_ANNIVERSARY_DAYS)
            return n.Anniversary(attr, days, path)
        conv = self.number if kind is Kind.NUMBER else self.instant_of(kind)
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise RuleError(f"{vpath}: must be a non-empty list")
            return n.Compare(
                attr, op, tuple(conv(v, f"{vpath}[{i}]") for i, v in enumerate(value)), path
            )
        if op == "between":
            return n.Compare(attr, op, self.pair(value, vpath, conv), path)
        return n.Compare(attr, op, (conv(value, vpath),), path)

    def window_rule(self, attr: Attribute, rule: Mapping[str, Any], path: str) -> n.WindowCompare:
        if attr.window_index is None:
            raise RuleError(
                f"{path}.window: {attr.name!r} keeps no daily window "
                f"(windowed: {', '.join(self.layout.windowed)})"
            )
        left = self.window(attr, rule["window"], rule.get("offset", "0d"), path)
        op = self.op(rule, path, n.COMPARISONS)
        factor = self.factor(rule, path)
        if "ref" in rule:
            if "value" in rule:
                raise RuleError(f'{path}.value: a rule has "value" or "ref", not both')
            if op == "between":
                raise RuleError(f'{path}.op: "between" compares with two values, not a ref')
            ref, rpath = rule["ref"], f"{path}.ref"
            if isinstance(ref, str):
                other = self.attribute(ref, rpath, (Kind.NUMBER,))
                right = self.window(other, rule["window"], "0d", path, rpath)
            elif isinstance(ref, Mapping):
                for key in ref:
                    if key not in ("attr", "window", "offset"):
                        raise RuleError(f"{rpath}.{key}: unknown field in a window ref")
                other = self.attribute(ref.get("attr", attr.name), f"{rpath}.attr", (Kind.NUMBER,))
                right = self.window(
                    other, ref.get("window", rule["window"]), ref.get("offset", "0d"), rpath
                )
            else:
                raise RuleError(
                    f'{rpath}: must be an attribute name or {{"attr", "window", "offset"}}'
                )
            return n.WindowCompare(left, op, (), right, factor, path)
        if "factor" in rule:
            raise RuleError(f'{path}.factor: only a comparison with "ref" has a factor')
        return n.WindowCompare(left, op, self.numbers_for(op, rule, path), None, 1.0, path)

    def window(
        self, attr: Attribute, days: Any, offset: Any, path: str, at: str | None = None
    ) -> n.Window:
        if attr.window_index is None:
            raise RuleError(f"{at or path + '.attr'}: {attr.name!r} keeps no daily window")
        d = self.days(days, f"{path}.window", WINDOW_DAYS)
        o = self.days(offset, f"{path}.offset", WINDOW_DAYS - 1, allow_zero=True)
        if d + o > WINDOW_DAYS:
            raise RuleError(
                f"{path}.window: window + offset reach {d + o} days back; "
                f"profiles keep {WINDOW_DAYS}"
            )
        return n.Window(attr, d, o)

    def ref_rule(self, attr: Attribute, rule: Mapping[str, Any], path: str) -> n.RefCompare:
        if "value" in rule:
            raise RuleError(f'{path}.value: a rule has "value" or "ref", not both')
        op = self.op(rule, path, _SCALAR_CMP)
        rpath = f"{path}.ref"
        if attr.kind is Kind.NUMBER:
            other = self.attribute(rule["ref"], rpath, (Kind.NUMBER,))
        elif attr.kind in _INSTANT:
            other = self.attribute(rule["ref"], rpath, _INSTANT)
        else:
            raise RuleError(
                f"{path}.attr: {attr.kind.value} attribute {attr.name!r} cannot be "
                "compared with another attribute (numbers and instants can)"
            )
        if "factor" in rule and attr.kind is not Kind.NUMBER:
            raise RuleError(f"{path}.factor: only number comparisons have a factor")
        return n.RefCompare(attr, op, other, self.factor(rule, path), path)

    # -- values ---------------------------------------------------------------------------

    def attribute(self, name: Any, path: str, kinds: tuple[Kind, ...] | None) -> Attribute:
        if not isinstance(name, str):
            raise RuleError(f"{path}: {show(name)} is not an attribute name")
        if name not in self.layout:
            raise RuleError(f"{path}: unknown attribute {show(name)}")
        attr = self.layout[name]
        if kinds is not None and attr.kind not in kinds:
            raise RuleError(
                f"{path}: {name!r} is a {attr.kind.value} attribute, "
                f"not {' or '.join(k.value for k in kinds)}"
            )
        return attr

    def op(self, rule: Mapping[str, Any], path: str, allowed: tuple[str, ...] | None) -> str:
        op = rule.get("op")
        if not isinstance(op, str) or op not in _ALL_OPS:
            raise RuleError(f"{path}.op: unknown operator {show(op)}")
        if allowed is not None and op not in allowed:
            raise RuleError(
                f"{path}.op: {show(op)} does not apply here (use one of {', '.join(allowed)})"
            )
        return op

    def no_value(self, rule: Mapping[str, Any], path: str, op: str) -> None:
        if "value" in rule:
            raise RuleError(f"{path}.value: operator {op!r} takes no value")

    def numbers_for(self, op: str, rule: Mapping[str, Any], path: str) -> tuple[float, ...]:
        if "value" not in rule:
            raise RuleError(f"{path}.value: missing (operator {op!r} compares with a value)")
        if op == "between":
            return self.pair(rule["value"], f"{path}.value", self.number)
        return (self.number(rule["value"], f"{path}.value"),)

    def factor(self, rule: Mapping[str, Any], path: str) -> float:
        return self.number(rule["factor"], f"{path}.factor") if "factor" in rule else 1.0

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RuleError(f"{path}: {show(value)} is not a number")
        if not math.isfinite(value):
            raise RuleError(f"{path}: {show(value)} is not a finite number")
        return float(value)

    def pair(self, value: Any, path: str, conv: Any) -> tuple[float, float]:
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(f'{path}: "between" needs [low, high]')
        lo, hi = conv(value[0], f"{path}[0]"), conv(value[1], f"{path}[1]")
        if lo > hi:
            raise RuleError(f"{path}: low {show(value[0])} is above high {show(value[1])}")
        return lo, hi

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise RuleError(f"{path}: {show(value)} is not a string")
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise RuleError(f"{path}: must be a non-empty list of strings")
        return tuple(self.string(v, f"{path}[{i}]") for i, v in enumerate(value))

    def instant_of(self, kind: Kind) -> Any:
        def conv(value: Any, path: str) -> float:
            return instant(value, path, date_only=kind is Kind.DATE)

        return conv

    def duration(self, value: Any, path: str) -> float:
        return duration(value, path)

    def days(self, value: Any, path: str, most: int, allow_zero: bool = False) -> int:
        seconds = duration(value, path, units="dw", allow_zero=allow_zero)
        days = seconds / DAY_SECONDS
        if days != int(days) or days > most:
            raise RuleError(f"{path}: {show(value)} must be whole days, at most {most}d")
        return int(days)


def duration(value: Any, path: str, units: str = "smhdw", allow_zero: bool = False) -> float:
    """Seconds of a duration like "30d"; raise RuleError naming `path` otherwise."""
    m = DURATION_RE.match(value) if isinstance(value, str) else None
    if m is None or m.group(2) not in units:
        raise RuleError(
            f"{path}: {show(value)} is not a duration "
            f'(a number and a unit, one of {" ".join(units)}; e.g. "30d")'
        )
    seconds = float(m.group(1)) * UNIT_SECONDS[m.group(2)]
    if seconds <= 0 and not allow_zero:
        raise RuleError(f"{path}: {show(value)} must be longer than 0")
    return seconds


def instant(value: Any, path: str, date_only: bool = False) -> float:
    """Epoch seconds of an instant: a number (epoch seconds) or ISO 8601 with an offset."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise RuleError(f"{path}: {show(value)} is not a finite number")
        return float(value)
    if not isinstance(value, str):
        raise RuleError(f"{path}: {show(value)} is not an instant (ISO 8601 or epoch seconds)")
    if DATE_RE.match(value):
        if not date_only:
            raise RuleError(
                f"{path}: {show(value)} is a date; an instant needs a time and "
                'an offset, e.g. "2026-01-31T00:00:00Z"'
            )
        try:
            d = date.fromisoformat(value)
        except ValueError:
            raise RuleError(f"{path}: {show(value)} is not a valid date") from None
        return float(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise RuleError(f"{path}: {show(value)} is not an ISO 8601 instant") from None
    if dt.tzinfo is None:
        raise RuleError(f'{path}: {show(value)} has no UTC offset (add "Z" or "+01:00")')
    return dt.timestamp()


_OPS: dict[Kind, tuple[str, ...]] = {
    Kind.NUMBER: (*n.COMPARISONS, "in", "not_in"),
    Kind.TIMESTAMP: (*n.COMPARISONS, "in", "not_in", "within", "older_than", "anniversary_within"),
    Kind.DATE: (*n.COMPARISONS, "in", "not_in", "within", "older_than", "anniversary_within"),
    Kind.CATEGORY: n.STRING_OPS,
    Kind.FLAG: ("eq", "ne"),
    Kind.TAGS: n.TAG_OPS,
}
_ALL_OPS = frozenset({op for ops in _OPS.values() for op in ops} | {"exists", "missing"})
