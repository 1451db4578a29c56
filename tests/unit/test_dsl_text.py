"""The text form: a real parser into the JSON tree, and an exact tree → text → tree round trip."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segserver.dsl.text import from_text, to_text
from segserver.dsl.validate import parse_rule
from segserver.errors import RuleError
from segserver.profile.schema import Schema

LAYOUT = Schema().layout


def test_issue_example() -> None:
    assert from_text("total_spent > 1000 and orders >= 5 and last_order_at within 30d") == {
        "all": [
            {"attr": "total_spent", "op": "gt", "value": 1000},
            {"attr": "orders", "op": "gte", "value": 5},
            {"attr": "last_order_at", "op": "within", "value": "30d"},
        ]
    }


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        (
            "a = 1 or b = 2 and c = 3",
            {
                "any": [
                    {"attr": "a", "op": "eq", "value": 1},
                    {
                        "all": [
                            {"attr": "b", "op": "eq", "value": 2},
                            {"attr": "c", "op": "eq", "value": 3},
                        ]
                    },
                ]
            },
        ),
        (
            "(a = 1 or b = 2) and c = 3",
            {
                "all": [
                    {
                        "any": [
                            {"attr": "a", "op": "eq", "value": 1},
                            {"attr": "b", "op": "eq", "value": 2},
                        ]
                    },
                    {"attr": "c", "op": "eq", "value": 3},
                ]
            },
        ),
        ('not device = "mobile"', {"not": {"attr": "device", "op": "eq", "value": "mobile"}}),
        (
            "x between 1 and 5 and y > 2",
            {
                "all": [
                    {"attr": "x", "op": "between", "value": [1, 5]},
                    {"attr": "y", "op": "gt", "value": 2},
                ]
            },
        ),
        ('country not in ["DE", "AT"]', {"attr": "country", "op": "not_in", "value": ["DE", "AT"]}),
        (
            "last_order_at < cart_updated_at",
            {"attr": "last_order_at", "op": "lt", "ref": "cart_updated_at"},
        ),
        (
            "page_views[30d] >= 20",
            {"attr": "page_views", "window": "30d", "op": "gte", "value": 20},
        ),
        (
            "sessions[14d] < 0.5 * sessions[14d offset 14d]",
            {
                "attr": "sessions",
                "window": "14d",
                "op": "lt",
                "factor": 0.5,
                "ref": {"attr": "sessions", "window": "14d", "offset": "14d"},
            },
        ),
        (
            "email_clicks / email_opens >= 0.5",
            {"ratio": ["email_clicks", "email_opens"], "op": "gte", "value": 0.5},
        ),
        ('bucket [0, 12.5] salt "exp"', {"bucket": [0, 12.5], "salt": "exp"}),
        (
            'segment returning_customers or segment "x-y"',
            {"any": [{"segment": "returning_customers"}, {"segment": "x-y"}]},
        ),
        ("identified = true", {"attr": "identified", "op": "eq", "value": True}),
        ("all(true)", {"all": [{"const": True}]}),
        ('tags has_any "vip"', {"attr": "tags", "op": "has_any", "value": "vip"}),
        ('name ieq "Ä\\"b"', {"attr": "name", "op": "ieq", "value": 'Ä"b'}),
        ("x gte -1.5e3", {"attr": "x", "op": "gte", "value": -1500.0}),
    ],
)
def test_parse(text: str, tree: dict[str, Any]) -> None:
    assert from_text(text) == tree
    assert from_text(to_text(tree)) == tree


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("orders >", "text[8]: expected a value, found the end"),
        ("orders > 1 and", "text[14]: expected a rule, found the end"),
        ("(orders > 1", "text[11]: expected ')', found the end"),
        ("orders ~ 1", "text[7]: unexpected character '~'"),
        ("orders > 1 1", "text[11]: expected the end, found '1'"),
        ("orders frob 1", "text[7]: expected an operator, found 'frob'"),
        ("__import__('os')", 'text[11]: unexpected character "\'"'),
    ],
)
def test_errors_name_the_position(text: str, message: str) -> None:
    with pytest.raises(RuleError) as err:
        from_text(text)
    assert err.value.message == message


def test_text_rules_validate_like_json() -> None:
    tree = from_text(
        "cart_items > 0 and cart_updated_at older_than 30m and "
        "(last_order_at missing or last_order_at < cart_updated_at)"
    )
    parse_rule(tree, LAYOUT)


NAMES = st.sampled_from(["orders", "total_spent", "country", "tags", "last_seen", "x_1"])
SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.booleans(),
)
DUR = st.builds(lambda n, u: f"{n}{u}", st.integers(1, 99), st.sampled_from("smhdw"))
WINDOW = st.fixed_dictionaries(
    {"window": st.builds(lambda n: f"{n}d", st.integers(1, 35))},
    optional={"offset": st.builds(lambda n: f"{n}d", st.integers(0, 9))},
)
CMP = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    def attr(extra: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(
            lambda a, w, e: {"attr": a, **w, **e},
            NAMES,
            st.one_of(st.just({}), WINDOW),
            st.just(extra),
        )

    return st.one_of(
        st.builds(lambda b, o, v: {**b, "op": o, "value": v}, attr({}), CMP, SCALARS),
        st.builds(
            lambda b, o, lo, hi: {**b, "op": "between", "value": [lo, hi]},
            attr({}),
            st.just(0),
            SCALARS,
            SCALARS,
        ),
        st.builds(
            lambda b, o, v: {**b, "op": o, "value": v},
            attr({}),
            st.sampled_from(["in", "not_in", "has_any", "has_all", "has_none"]),
            st.lists(SCALARS, min_size=1, max_size=3),
        ),
        st.builds(
            lambda b, o, v: {**b, "op": o, "value": v},
            attr({}),
            st.sampled_from(["ieq", "starts_with", "ends_with", "contains", "has_any"]),
            st.text(max_size=6),
        ),
        st.builds(
            lambda b, o, v: {**b, "op": o, "value": v},
            attr({}),
            st.sampled_from(["within", "older_than", "anniversary_within"]),
            DUR,
        ),
        st.builds(lambda b, o: {**b, "op": o}, attr({}), st.sampled_from(["exists", "missing"])),
        st.builds(
            lambda b, o, r, f: {**b, "op": o, "ref": r, **f},
            attr({}),
            CMP,
            st.one_of(NAMES, st.builds(lambda a, w: {"attr": a, **w}, NAMES, WINDOW)),
            st.one_of(
                st.just({}), st.builds(lambda x: {"factor": x}, st.sampled_from([0.5, 2, 1]))
            ),
        ),
        st.builds(
            lambda a, b, o, v: {"ratio": [a, b], "op": o, "value": v},
            NAMES,
            NAMES,
            CMP,
            st.integers(0, 9),
        ),
        st.builds(
            lambda lo, hi, s: {"bucket": [lo, hi], **s},
            st.integers(0, 50),
            st.integers(51, 100),
            st.one_of(
                st.just({}), st.builds(lambda t: {"salt": t}, st.text(min_size=1, max_size=5))
            ),
        ),
        st.builds(lambda s: {"segment": s}, st.text(min_size=1, max_size=8)),
        st.builds(lambda b: {"const": b}, st.booleans()),
    )


TREES = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(TREES)
def test_round_trip(tree: dict[str, Any]) -> None:
    assert from_text(to_text(tree)) == tree
