"""The prebuilt segments: they load, compile, and hold exactly at their time boundaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segserver.bench.features import build_features
from segserver.dsl.prebuilt import PrebuiltSegment, load_prebuilt, segments_dir
from segserver.dsl.validate import instant
from segserver.engine import SegmentDef, build_program, evaluate, members
from segserver.engine import reference as twin
from segserver.errors import ConfigError
from segserver.profile.schema import DAY_SECONDS, Schema
from segserver.profile.vocabulary import Vocabulary

LAYOUT = Schema().layout
NOW = instant("2026-11-22T12:00:00Z", "now")
H, M, D = 3600, 60, DAY_SECONDS
PREBUILT = load_prebuilt()


def members_of(impl: str, profile: dict[str, Any], now: float = NOW) -> set[str]:
    vocab = Vocabulary({"device": ["desktop", "mobile", "tablet"]})
    features = build_features(LAYOUT, vocab, profile, NOW)  # day offsets count from NOW
    program = build_program([SegmentDef(s.id, s.rule, s.priority) for s in PREBUILT], LAYOUT, vocab)
    out = np.zeros(program.words, np.uint64)
    (twin.evaluate if impl == "py" else evaluate)(program, features, now, out)
    return set(members(program, out))


@pytest.fixture(params=["py", "numba"])
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_issue_list_is_shipped() -> None:
    assert {s.id for s in PREBUILT} == {
        "everyone",
        "new_visitors",
        "returning_visitors",
        "returning_customers",
        "high_value_customers",
        "cart_abandoners",
        "recent_buyers",
        "lapsed_customers",
        "churn_risk",
        "highly_engaged",
        "window_shoppers",
        "mobile_visitors",
        "birthday_this_week",
    }
    for seg in PREBUILT:
        assert isinstance(seg, PrebuiltSegment) and seg.name and seg.description
        data = json.loads((segments_dir() / f"{seg.id}.json").read_text())
        assert data == seg.to_json()


def test_empty_profile(impl: str) -> None:
    assert members_of(impl, {}) == {"everyone", "new_visitors"}


def test_visitors_and_customers(impl: str) -> None:
    assert "returning_visitors" in members_of(impl, {"sessions": 2})
    assert "new_visitors" in members_of(impl, {"sessions": 1})
    assert "returning_customers" not in members_of(impl, {"orders": 1})
    assert "returning_customers" in members_of(impl, {"orders": 2})
    assert "mobile_visitors" in members_of(impl, {"device": "mobile"})
    assert "mobile_visitors" not in members_of(impl, {"device": "tablet"})


@pytest.mark.parametrize(
    ("spent", "orders", "expected"),
    [(500, 3, True), (499.99, 3, False), (500, 2, False), (10_000, 10, True)],
)
def test_high_value(impl: str, spent: float, orders: int, expected: bool) -> None:
    found = members_of(impl, {"total_spent": spent, "orders": orders})
    assert ("high_value_customers" in found) is expected


@pytest.mark.parametrize(
    ("age", "expected"), [(30 * M - 1, False), (30 * M, True), (30 * M + 1, True)]
)
def test_cart_abandoners_after_30_minutes(impl: str, age: int, expected: bool) -> None:
    profile = {"cart_items": 2, "cart_updated_at": NOW - age}
    assert ("cart_abandoners" in members_of(impl, profile)) is expected


def test_cart_abandoners_need_items_and_no_purchase_since(impl: str) -> None:
    cart = NOW - H
    assert "cart_abandoners" not in members_of(impl, {"cart_items": 0, "cart_updated_at": cart})
    assert "cart_abandoners" in members_of(
        impl, {"cart_items": 1, "cart_updated_at": cart, "last_order_at": cart - 1}
    )
    assert "cart_abandoners" not in members_of(
        impl, {"cart_items": 1, "cart_updated_at": cart, "last_order_at": cart}
    )
    assert "cart_abandoners" not in members_of(
        impl, {"cart_items": 1, "cart_updated_at": cart, "last_order_at": cart + 60}
    )


@pytest.mark.parametrize(
    ("age", "recent", "lapsed"),
    [
        (30 * D - 1, True, False),
        (30 * D, False, False),
        (90 * D - 1, False, False),
        (90 * D, False, True),
        (400 * D, False, True),
    ],
)
def test_recent_buyers_and_lapsed_customers(
    impl: str, age: int, recent: bool, lapsed: bool
) -> None:
    found = members_of(impl, {"orders": 1, "last_order_at": NOW - age})
    assert ("recent_buyers" in found) is recent
    assert ("lapsed_customers" in found) is lapsed


@pytest.mark.parametrize(("inactive", "expected"), [(30 * D - 1, False), (30 * D, True)])
def test_churn_risk_inactive_after_regular_visits(impl: str, inactive: int, expected: bool) -> None:
    assert ("churn_risk" in members_of(impl, {"sessions": 5, "last_seen": NOW - inactive})) is (
        expected
    )
    assert "churn_risk" not in members_of(impl, {"sessions": 4, "last_seen": NOW - 60 * D})


@pytest.mark.parametrize(
    ("recent", "before", "expected"),
    [(1, 4, True), (2, 4, False), (4, 10, True), (5, 10, False), (0, 3, False)],
)
def test_churn_risk_visits_halved(impl: str, recent: int, before: int, expected: bool) -> None:
    profile = {
        "sessions": 20,
        "last_seen": NOW,
        "sessions.daily": {"0": recent, "-14": before},
    }  # day -14: the 14 days before
    assert ("churn_risk" in members_of(impl, profile)) is expected


def test_churn_risk_window_boundaries(impl: str) -> None:
    # 4 sessions 27 days ago are in "the 14 days before" (days -27 .. -14) ...
    profile = {"sessions": 20, "last_seen": NOW, "sessions.daily": {"-27": 4}}
    assert "churn_risk" in members_of(impl, profile)
    # ... and at the next UTC midnight they leave it.
    assert "churn_risk" not in members_of(impl, profile, (NOW // D + 1) * D)
    # A session 13 days ago is in the last 14 days, 14 days ago is not.
    profile = {"sessions": 20, "last_seen": NOW, "sessions.daily": {"-20": 4, "-13": 2}}
    assert "churn_risk" not in members_of(impl, profile)
    profile = {"sessions": 20, "last_seen": NOW, "sessions.daily": {"-20": 4, "-14": 2}}
    assert "churn_risk" in members_of(impl, profile)


def test_highly_engaged(impl: str) -> None:
    base = {
        "sessions.daily": {"0": 4, "-29": 4},
        "last_email_open_at": NOW - 29 * D,
        "email_opens": 10,
        "email_clicks": 2,
    }
    assert "highly_engaged" in members_of(impl, base)
    assert "highly_engaged" not in members_of(impl, {**base, "email_clicks": 1})
    assert "highly_engaged" not in members_of(impl, {**base, "last_email_open_at": NOW - 30 * D})
    assert "highly_engaged" not in members_of(impl, {**base, "sessions.daily": {"0": 4, "-30": 4}})
    assert "highly_engaged" not in members_of(impl, {**base, "email_opens": 0})


def test_window_shoppers(impl: str) -> None:
    views = {"product_views.daily": {"0": 6, "-29": 4}}
    assert "window_shoppers" in members_of(impl, views)
    assert "window_shoppers" in members_of(impl, {**views, "orders": 0})
    assert "window_shoppers" not in members_of(impl, {**views, "orders": 1})
    assert "window_shoppers" not in members_of(impl, {"product_views.daily": {"0": 6, "-30": 4}})


@pytest.mark.parametrize(
    ("birthday", "now", "expected"),
    [
        ("1990-11-22", NOW, True),  # today
        ("1990-11-28", NOW, True),  # the 7th day
        ("1990-11-29", NOW, False),
        ("1990-11-21", NOW, False),  # yesterday: next year
        ("1990-11-28", (NOW // D) * D - 1, False),  # one second before today began
        ("1990-01-02", instant("2026-12-28T23:59:59Z", "now"), True),  # across the new year
        ("1992-02-29", instant("2027-02-25T00:00:00Z", "now"), True),  # 28 Feb in 2027
        ("1992-02-29", instant("2028-02-29T12:00:00Z", "now"), True),
        ("1992-02-29", instant("2028-03-01T00:00:00Z", "now"), False),
    ],
)
def test_birthday_this_week(impl: str, birthday: str, now: float, expected: bool) -> None:
    assert ("birthday_this_week" in members_of(impl, {"birthday": birthday}, now)) is expected


def test_loader_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(
        json.dumps(
            {"id": "y", "name": "", "description": "", "priority": 0, "tags": [], "rule": {}}
        )
    )
    with pytest.raises(ConfigError, match="named after its id"):
        load_prebuilt(tmp_path)
    (tmp_path / "x.json").write_text(
        json.dumps(
            {"id": "x", "name": "", "description": "", "priority": 0, "tags": [], "rule": {}}
        )
    )
    with pytest.raises(ConfigError, match=r"x\.json: rule: a rule needs one of"):
        load_prebuilt(tmp_path)
