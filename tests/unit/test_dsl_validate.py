"""The compiler rejects every malformed rule once, naming the JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from segserver.dsl import nodes as n
from segserver.dsl.validate import parse_rule
from segserver.engine import SegmentDef, build_program, compile_rule
from segserver.errors import RuleError
from segserver.profile.schema import Schema
from segserver.profile.vocabulary import Vocabulary

LAYOUT = Schema().layout

BAD: list[tuple[Any, str]] = [
    ("x", 'rule: a rule must be an object, not "x"'),
    ({}, "rule: a rule needs one of"),
    ({"all": []}, "rule.all: an empty group"),
    ({"any": {}}, "rule.any: must be a list of rules"),
    (
        {"all": [{"attr": "nope", "op": "eq", "value": 1}]},
        'rule.all[0].attr: unknown attribute "nope"',
    ),
    (
        {
            "all": [
                {"attr": "orders", "op": "gt", "value": 1},
                {"attr": "orders", "op": "gt"},
                {"attr": "orders", "op": "gt", "value": "abc"},
            ]
        },
        "rule.all[1].value: missing",
    ),
    (
        {
            "all": [
                {"attr": "orders", "op": "gt", "value": 1},
                {"attr": "orders", "op": "gt", "value": 1},
                {"attr": "orders", "op": "gt", "value": "abc"},
            ]
        },
        'rule.all[2].value: "abc" is not a number',
    ),
    ({"attr": "orders", "op": "gt", "value": True}, "rule.value: true is not a number"),
    ({"attr": "country", "op": "eq", "value": 5}, "rule.value: 5 is not a string"),
    ({"attr": "country", "op": "gt", "value": "DE"}, 'rule.op: "gt" does not apply to category'),
    (
        {"attr": "orders", "op": "starts_with", "value": "1"},
        'rule.op: "starts_with" does not apply',
    ),
    ({"attr": "orders", "op": "like", "value": 1}, 'rule.op: unknown operator "like"'),
    (
        {"attr": "last_order_at", "op": "within", "value": "30y"},
        'rule.value: "30y" is not a duration',
    ),
    ({"attr": "last_order_at", "op": "within", "value": 30}, "rule.value: 30 is not a duration"),
    ({"attr": "last_order_at", "op": "within", "value": "0d"}, 'rule.value: "0d" must be longer'),
    ({"attr": "orders", "op": "within", "value": "3d"}, 'rule.op: "within" does not apply'),
    ({"attr": "last_order_at", "op": "gt", "value": "2026-01-01T00:00:00"}, "has no UTC offset"),
    ({"attr": "last_order_at", "op": "gt", "value": "yesterday"}, "is not an ISO 8601 instant"),
    ({"attr": "last_order_at", "op": "gt", "value": "2026-01-01"}, "is a date; an instant needs"),
    ({"attr": "orders", "op": "between", "value": [5, 1]}, "rule.value: low 5 is above high 1"),
    ({"attr": "orders", "op": "between", "value": 5}, 'rule.value: "between" needs [low, high]'),
    ({"attr": "orders", "op": "in", "value": []}, "rule.value: must be a non-empty list"),
    (
        {"attr": "orders", "op": "exists", "value": 1},
        "rule.value: operator 'exists' takes no value",
    ),
    ({"attr": "orders", "op": "gt", "value": 1, "extra": 1}, "rule.extra: unknown field"),
    (
        {"attr": "cart_items", "window": "7d", "op": "gt", "value": 1},
        "rule.window: 'cart_items' keeps no",
    ),
    (
        {"attr": "page_views", "window": "36d", "op": "gt", "value": 1},
        'rule.window: "36d" must be whole days, at most 35d',
    ),
    (
        {"attr": "page_views", "window": "30d", "offset": "10d", "op": "gt", "value": 1},
        "rule.window: window + offset reach 40 days",
    ),
    (
        {"attr": "page_views", "window": "12h", "op": "gt", "value": 1},
        'rule.window: "12h" is not a duration',
    ),
    (
        {"attr": "orders", "op": "lt", "ref": "country"},
        "rule.ref: 'country' is a category attribute",
    ),
    ({"attr": "last_order_at", "op": "lt", "ref": "orders"}, "rule.ref: 'orders' is a number"),
    (
        {"attr": "orders", "op": "lt", "ref": "sessions", "value": 1},
        'rule.value: a rule has "value" or "ref"',
    ),
    ({"ratio": ["orders"], "op": "gt", "value": 1}, "rule.ratio: must be [numerator, denominator]"),
    (
        {"ratio": ["orders", "country"], "op": "gt", "value": 1},
        "rule.ratio[1]: 'country' is a category",
    ),
    ({"bucket": [10, 5]}, "rule.bucket: needs from < to"),
    ({"bucket": [0, 101]}, "rule.bucket[1]: 101 is not a percentage"),
    ({"bucket": [0, 0.001]}, "rule.bucket[1]: 0.001 is not a percentage"),
    ({"segment": "ghost"}, 'rule.segment: unknown segment "ghost"'),
    ({"not": {"attr": "orders"}}, "rule.not.op: unknown operator null"),
    ({"attr": "orders", "op": "gt", "value": 1, "not": {}}, "rule: a rule has one of"),
    ({"const": 1}, "rule.const: 1 is not true or false"),
    ({"attr": "tags", "op": "has_any", "value": [1]}, "rule.value[0]: 1 is not a string"),
    ({"attr": "identified", "op": "eq", "value": 1}, "rule.value: 1 is not true or false"),
    ({"attr": "birthday", "op": "anniversary_within", "value": "400d"}, "at most 366d"),
]


@pytest.mark.parametrize(("rule", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_rules_name_the_path(rule: Any, message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule(rule, LAYOUT, ["known"])
    assert message in err.value.message
    assert err.value.message.startswith("rule")
    assert err.value.code == "invalid_rule"


def test_design_example_compiles() -> None:
    rule = {
        "all": [
            {"attr": "total_spent", "op": "gt", "value": 1000},
            {"attr": "last_order_at", "op": "within", "value": "30d"},
            {"attr": "page_views", "window": "30d", "op": "gte", "value": 20},
            {"attr": "last_order_at", "op": "lt", "ref": "cart_updated_at"},
            {"ratio": ["email_clicks", "email_opens"], "op": "gte", "value": 0.5},
            {
                "any": [
                    {"attr": "country", "op": "in", "value": ["DE", "AT"]},
                    {"not": {"attr": "device", "op": "eq", "value": "mobile"}},
                ]
            },
            {"segment": "returning_customers"},
            {"bucket": [0, 10]},
        ]
    }
    tree = compile_rule(rule, LAYOUT, Vocabulary(), ["returning_customers"])
    assert isinstance(tree, n.Group)
    assert len(tree.children) == 8
    assert n.segment_refs(tree) == {"returning_customers"}


def test_instants_are_converted_to_utc_when_compiled() -> None:
    a = parse_rule({"attr": "signup_at", "op": "gt", "value": "2026-01-01T01:00:00+01:00"}, LAYOUT)
    b = parse_rule({"attr": "signup_at", "op": "gt", "value": "2026-01-01T00:00:00Z"}, LAYOUT)
    c = parse_rule({"attr": "signup_at", "op": "gt", "value": 1767225600}, LAYOUT)
    assert isinstance(a, n.Compare) and isinstance(b, n.Compare) and isinstance(c, n.Compare)
    assert a.values == b.values == c.values == (1767225600.0,)


def test_units() -> None:
    for text, seconds in [
        ("45s", 45),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1.5h", 5400),
    ]:
        node = parse_rule({"attr": "last_seen", "op": "within", "value": text}, LAYOUT)
        assert isinstance(node, n.Age) and node.seconds == seconds


def test_self_reference_and_cycles() -> None:
    with pytest.raises(RuleError, match="refers to itself"):
        compile_rule({"segment": "a"}, LAYOUT, Vocabulary(), ["a"], segment_id="a")
    segments = [
        SegmentDef("a", {"segment": "b"}),
        SegmentDef("b", {"not": {"segment": "c"}}),
        SegmentDef("c", {"any": [{"const": True}, {"segment": "a"}]}),
    ]
    with pytest.raises(RuleError, match="reference cycle a → b → c → a") as err:
        build_program(segments, LAYOUT, Vocabulary())
    assert err.value.message.startswith("rule: ")


def test_build_program_names_the_segment() -> None:
    segments = [
        SegmentDef("ok", {"const": True}),
        SegmentDef("bad", {"all": [{"attr": "orders", "op": "gt", "value": "x"}]}),
    ]
    with pytest.raises(RuleError) as err:
        build_program(segments, LAYOUT, Vocabulary())
    assert err.value.message == "rule.all[0].value: \"x\" is not a number (segment 'bad')"
    assert err.value.details == {"segment": "bad"}
    with pytest.raises(RuleError, match="appears twice"):
        build_program([SegmentDef("a", {"const": True})] * 2, LAYOUT, Vocabulary())


def test_custom_attributes_are_known() -> None:
    schema = Schema.from_json(
        {
            "attributes": [{"name": "plan", "kind": "category"}, {"name": "ltv", "kind": "number"}],
            "events": [{"name": "quiz", "window": True}],
        }
    )
    rule = {
        "all": [
            {"attr": "plan", "op": "eq", "value": "pro"},
            {"attr": "ltv", "op": "gt", "value": 10},
            {"attr": "quiz_count", "window": "7d", "op": "gte", "value": 1},
            {"attr": "quiz_at", "op": "within", "value": "1d"},
        ]
    }
    parse_rule(rule, schema.layout)
    with pytest.raises(RuleError, match="unknown attribute"):
        parse_rule(rule, LAYOUT)
