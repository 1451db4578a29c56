"""The short text form of rules: a hand-written tokenizer and recursive-descent parser.

    total_spent > 1000 and orders >= 5 and last_order_at within 30d

parses to exactly the JSON tree the API takes (no `eval`, no code generation), and
`to_text` prints any tree back so that `from_text(to_text(tree)) == tree`. Grammar:

    expr    := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | atom
    atom    := "(" expr ")" | ("all" | "any") "(" expr ("," expr)* ")"
             | "true" | "false" | "segment" (NAME | STRING)
             | "bucket" "[" NUM "," NUM "]" ["salt" STRING]
             | NAME "/" NAME CMP NUM | NAME "/" NAME "between" NUM "and" NUM
             | operand (exists | missing)
             | operand CMP value | operand CMP [NUM "*"] operand     (ref, factor)
             | operand "between" value "and" value
             | operand ["not"] "in" list | operand (has_any|has_all|has_none) (list|STRING)
             | operand (within|older_than|anniversary_within) DURATION
             | operand (ieq|starts_with|ends_with|contains) STRING
    operand := NAME ["[" DURATION ["offset" DURATION] "]"]               (window)
    CMP     := "=" | "!=" | ">" | ">=" | "<" | "<="
    value   := NUM | STRING | "true" | "false";  list := "[" value ("," value)* "]"

Numbers and strings use JSON's syntax. A tree → text → tree round trip is exact for
every valid tree whose window refs name their attribute (`{"attr": ..., "window": ...}`
or a bare attribute name), which is every tree the parser produces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import orjson

from segserver.dsl.validate import MAX_DEPTH
from segserver.errors import RuleError

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<dur>[0-9]+(?:\.[0-9]+)?[smhdw](?![A-Za-z0-9_]))
  | (?P<num>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>>=|<=|!=|==|=|>|<|\(|\)|\[|\]|,|/|\*)
""",
    re.VERBOSE,
)

_CMP = {"=": "eq", "==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_CMP_WORDS = {"eq", "ne", "gt", "gte", "lt", "lte"}
_SYMBOL = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_UNARY_OPS = ("exists", "missing")
_DURATION_OPS = ("within", "older_than", "anniversary_within")
_STRING_OPS = ("ieq", "starts_with", "ends_with", "contains")
_TAG_OPS = ("has_any", "has_all", "has_none")
#: Words that start an atom other than an attribute: attributes so named cannot be written.
RESERVED = frozenset({"and", "or", "not", "all", "any", "true", "false", "segment", "bucket"})
_SEGMENT_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Tok:
    __slots__ = ("kind", "pos", "text")

    def __init__(self, kind: str, text: str, pos: int) -> None:
        self.kind, self.text, self.pos = kind, text, pos


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise RuleError(f"text[{pos}]: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


def from_text(text: str) -> dict[str, Any]:
    """Parse the text form into the rule's JSON tree; RuleError naming the position."""
    parser = _Parser(_tokens(text))
    tree = parser.expr()
    parser.expect("end")
    return tree


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.i = 0
        self.depth = 0  # open groups: bounded like the JSON form (dsl.validate.MAX_DEPTH)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleError(f"text[{self.tok.pos}]: rules nest at most {MAX_DEPTH} groups deep")

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, want: str) -> RuleError:
        t = self.tok
        found = "the end" if t.kind == "end" else repr(t.text)
        return RuleError(f"text[{t.pos}]: expected {want}, found {found}")

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "name" and self.tok.text in words

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def take(self) -> _Tok:
        t = self.tok
        self.i += 1
        return t

    def expect(self, kind: str, text: str | None = None) -> _Tok:
        if self.tok.kind != kind or (text is not None and self.tok.text != text):
            raise self.fail(repr(text) if text else {"end": "the end"}.get(kind, kind))
        return self.take()

    def word(self, word: str) -> None:
        if not self.is_word(word):
            raise self.fail(repr(word))
        self.take()

    def expr(self) -> dict[str, Any]:
        items = [self.conj()]
        while self.is_word("or"):
            self.take()
            items.append(self.conj())
        return items[0] if len(items) == 1 else {"any": items}

    def conj(self) -> dict[str, Any]:
        items = [self.unary()]
        while self.is_word("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else {"all": items}

    def unary(self) -> dict[str, Any]:
        if self.is_word("not"):
            self.take()
            self.enter()
            inner = self.unary()
            self.depth -= 1
            return {"not": inner}
        return self.atom()

    def atom(self) -> dict[str, Any]:
        if self.is_op("("):
            self.take()
            self.enter()
            inner = self.expr()
            self.expect("op", ")")
            self.depth -= 1
            return inner
        if self.tok.kind != "name":
            raise self.fail("a rule")
        word = self.tok.text
        nxt = self.toks[self.i + 1]
        if word in ("all", "any") and nxt.text == "(":
            self.i += 2
            self.enter()
            items = [self.expr()]
            while self.is_op(","):
                self.take()
                items.append(self.expr())
            self.expect("op", ")")
            self.depth -= 1
            return {word: items}
        if word in ("true", "false"):
            self.take()
            return {"const": word == "true"}
        if word == "segment":
            self.take()
            if self.tok.kind == "str":
                return {"segment": self.string()}
            return {"segment": self.expect("name").text}
        if word == "bucket":
            self.take()
            self.expect("op", "[")
            lo = self.number()
            self.expect("op", ",")
            hi = self.number()
            self.expect("op", "]")
            rule: dict[str, Any] = {"bucket": [lo, hi]}
            if self.is_word("salt"):
                self.take()
                rule["salt"] = self.string()
            return rule
        if word in RESERVED:
            raise self.fail("a rule")
        return self.leaf()

    def leaf(self) -> dict[str, Any]:
        name = self.expect("name").text
        if self.is_op("/"):
            self.take()
            den = self.expect("name").text
            rule: dict[str, Any] = {"ratio": [name, den]}
            self.comparison(rule, allow_ref=False)
            return rule
        rule = {"attr": name}
        if self.is_op("["):
            rule.update(self.window())
        self.comparison(rule, allow_ref=True)
        return rule

    def window(self) -> dict[str, Any]:
        self.expect("op", "[")
        spec = {"window": self.expect("dur").text}
        if self.is_word("offset"):
            self.take()
            spec["offset"] = self.expect("dur").text
        self.expect("op", "]")
        return spec

    def comparison(self, rule: dict[str, Any], allow_ref: bool) -> None:
        t = self.tok
        if (t.kind == "op" and t.text in _CMP) or (t.kind == "name" and t.text in _CMP_WORDS):
            self.take()
            rule["op"] = _CMP.get(t.text, t.text)
            if allow_ref and (
                (self.tok.kind == "name" and self.tok.text not in ("true", "false"))
                or (self.tok.kind == "num" and self.toks[self.i + 1].text == "*")
            ):
                if self.tok.kind == "num":
                    rule["factor"] = self.number()
                    self.expect("op", "*")
                ref = self.expect("name").text
                if self.is_op("["):
                    rule["ref"] = {"attr": ref, **self.window()}
                else:
                    rule["ref"] = ref
                return
            rule["value"] = self.value()
            return
        if t.kind != "name":
            raise self.fail("an operator")
        op = self.take().text
        if op == "not":
            self.word("in")
            op = "not_in"
        rule["op"] = op
        if op in _UNARY_OPS:
            return
        if op == "between":
            lo = self.value()
            self.word("and")
            rule["value"] = [lo, self.value()]
        elif op in ("in", "not_in"):
            rule["value"] = self.list()
        elif op in _TAG_OPS:
            rule["value"] = self.list() if self.is_op("[") else self.string()
        elif op in _DURATION_OPS:
            rule["value"] = self.expect("dur").text
        elif op in _STRING_OPS:
            rule["value"] = self.string()
        else:
            self.i -= 1
            raise self.fail("an operator")

    def list(self) -> list[Any]:
        self.expect("op", "[")
        items = [self.value()]
        while self.is_op(","):
            self.take()
            items.append(self.value())
        self.expect("op", "]")
        return items

    def value(self) -> Any:
        t = self.tok
        if t.kind == "num":
            return self.number()
        if t.kind == "str":
            return self.string()
        if self.is_word("true", "false"):
            self.take()
            return t.text == "true"
        raise self.fail("a value")

    def number(self) -> Any:
        t = self.expect("num")
        try:
            return orjson.loads(t.text)  # strict: 1e999 (infinity) is refused
        except orjson.JSONDecodeError:
            raise RuleError(f"text[{t.pos}]: {t.text} is not a finite number") from None

    def string(self) -> str:
        t = self.expect("str")
        try:
            value = orjson.loads(t.text)  # strict: no lone surrogates ("\\udc00")
        except orjson.JSONDecodeError:
            raise RuleError(f"text[{t.pos}]: {t.text} is not a valid string") from None
        assert isinstance(value, str)
        return value


# -- printing -------------------------------------------------------------------------------


def to_text(rule: Mapping[str, Any]) -> str:
    """Print a (valid) rule tree in the text form."""
    return _print(rule, "or")


def _print(rule: Mapping[str, Any], ctx: str) -> str:
    for kind, joiner in (("all", " and "), ("any", " or ")):
        if kind in rule:
            items = rule[kind]
            if len(items) == 1:
                return f"{kind}({_print(items[0], 'or')})"
            inner = "and" if kind == "all" else "or"
            text = joiner.join(_print(c, "atom" if _is_group(c, kind) else inner) for c in items)
            needs = ctx == "atom" or (ctx == "and" and kind == "any")
            return f"({text})" if needs else text
    if "not" in rule:
        return f"not {_print(rule['not'], 'atom')}"
    if "const" in rule:
        return "true" if rule["const"] else "false"
    if "segment" in rule:
        sid = rule["segment"]
        return (
            f"segment {sid}"
            if _SEGMENT_ID.match(sid) and sid not in RESERVED
            else (f"segment {_value(sid)}")
        )
    if "bucket" in rule:
        lo, hi = rule["bucket"]
        text = f"bucket [{_value(lo)}, {_value(hi)}]"
        return f"{text} salt {_value(rule['salt'])}" if "salt" in rule else text
    if "ratio" in rule:
        num, den = rule["ratio"]
        return f"{_name(num)} / {_name(den)} {_rhs(rule)}"
    left = _name(rule["attr"])
    if "window" in rule:
        left += _window(rule)
    return f"{left} {_rhs(rule)}"


def _is_group(rule: Mapping[str, Any], parent: str) -> bool:
    """A child group that needs parentheses to keep the tree's shape."""
    for kind in ("all", "any"):
        if kind in rule and len(rule[kind]) > 1:
            return kind == parent
    return False


def _rhs(rule: Mapping[str, Any]) -> str:
    op = str(rule["op"])
    if op in _UNARY_OPS:
        return op
    if "ref" in rule:
        ref = rule["ref"]
        right = _name(ref) if isinstance(ref, str) else _name(ref["attr"]) + _window(ref)
        factor = f"{_value(rule['factor'])} * " if "factor" in rule else ""
        return f"{_SYMBOL[op]} {factor}{right}"
    value: Any = rule.get("value")
    if op in _SYMBOL:
        return f"{_SYMBOL[op]} {_value(value)}"
    if op == "between":
        return f"between {_value(value[0])} and {_value(value[1])}"
    if op in ("in", "not_in"):
        items = ", ".join(_value(v) for v in value)
        return f"{'not in' if op == 'not_in' else 'in'} [{items}]"
    if op in _TAG_OPS and isinstance(value, list):
        return f"{op} [{', '.join(_value(v) for v in value)}]"
    if op in _DURATION_OPS:
        return f"{op} {value}"
    return f"{op} {_value(value)}"


def _window(spec: Mapping[str, Any]) -> str:
    offset = f" offset {spec['offset']}" if "offset" in spec else ""
    return f"[{spec['window']}{offset}]"


def _name(name: str) -> str:
    if name in RESERVED:
        raise RuleError(f"text: attribute {name!r} cannot be written in the text form")
    return name


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
