"""The statistics of campaign results: the two-proportion z-test and an arm's rates."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from segserver.results import arm_json, two_proportion_z


def test_z_test_against_hand_computed_values() -> None:
    # 60/1000 vs 40/1000: pooled p = 100/2000 = 0.05,
    # se = sqrt(0.05 * 0.95 * (1/1000 + 1/1000)) = sqrt(0.000095) = 0.0097467943...
    # z = 0.02 / 0.0097467943 = 2.0519567...; p = 2 * (1 - Phi(2.05196)) = 0.040174
    test = two_proportion_z(60, 1000, 40, 1000)
    assert test.available
    assert test.rate == pytest.approx(0.06)
    assert test.control_rate == pytest.approx(0.04)
    assert test.absolute == pytest.approx(0.02)
    assert test.relative == pytest.approx(0.5)
    assert test.z == pytest.approx(2.0519567, abs=1e-6)
    assert test.p_value == pytest.approx(0.040174, abs=1e-6)
    # 95 % interval of the difference, unpooled: se = sqrt(.06*.94/1000 + .04*.96/1000)
    # = 0.0097365; 0.02 -/+ 1.96 * se
    assert test.ci95 is not None
    assert test.ci95[0] == pytest.approx(0.000917, abs=1e-6)
    assert test.ci95[1] == pytest.approx(0.039083, abs=1e-6)


def test_z_test_negative_lift_is_symmetric() -> None:
    # 20/100 vs 30/100: pooled 0.25, se = sqrt(0.25 * 0.75 * 0.02) = 0.0612372,
    # z = -0.1 / 0.0612372 = -1.6329932
    test = two_proportion_z(20, 100, 30, 100)
    assert test.z == pytest.approx(-1.6329932, abs=1e-6)
    assert test.relative == pytest.approx(-1 / 3)
    assert test.p_value == pytest.approx(two_proportion_z(30, 100, 20, 100).p_value)


@pytest.mark.parametrize(
    ("c1", "n1", "c0", "n0"),
    [(5, 50, 9, 70), (120, 4000, 80, 3900), (1, 3, 0, 2), (700, 1000, 650, 1000)],
)
def test_p_value_is_the_two_sided_normal_tail(c1: int, n1: int, c0: int, n0: int) -> None:
    test = two_proportion_z(c1, n1, c0, n0)
    assert test.z is not None and test.p_value is not None
    assert test.p_value == pytest.approx(2 * (1 - NormalDist().cdf(abs(test.z))), abs=1e-9)
    assert 0 <= test.p_value <= 1


def test_same_rates_give_z_zero() -> None:
    for args in ((10, 100, 10, 100), (0, 100, 0, 50), (40, 40, 7, 7)):
        test = two_proportion_z(*args)
        assert test.available and test.z == 0 and test.p_value == 1.0


def test_zero_control_rate_has_no_relative_lift() -> None:
    test = two_proportion_z(3, 100, 0, 100)
    assert test.available and test.relative is None and test.absolute == pytest.approx(0.03)
    assert test.z is not None and test.z > 0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((0, 0, 3, 100), "the variant has no exposed visitors"),
        ((3, 100, 0, 0), "the holdout has no exposed visitors"),
        ((0, 0, 0, 0), "the variant has no exposed visitors"),
        ((5, 4, 0, 10), "conversions must be between 0 and the exposed visitors"),
    ],
)
def test_empty_arms_are_not_available(args: tuple[int, int, int, int], reason: str) -> None:
    test = two_proportion_z(*args)
    assert not test.available
    assert test.to_json() == {"available": False, "reason": reason}


def test_to_json_shape() -> None:
    out = two_proportion_z(60, 1000, 40, 1000).to_json()
    assert set(out) == {"available", "absolute", "relative", "z", "p_value", "ci95"}
    assert out["available"] is True and len(out["ci95"]) == 2
    assert all(math.isfinite(v) for v in (out["z"], out["p_value"], *out["ci95"]))


def test_arm_json_rates() -> None:
    arm = arm_json(
        {
            "exposed": 8,
            "conversions": 2,
            "impression": 10,
            "click": 4,
            "dismiss": 1,
            "conversion": 3,
            "value": 99.5,
        }
    )
    assert arm == {
        "exposed": 8,
        "impressions": 10,
        "clicks": 4,
        "dismisses": 1,
        "conversion_events": 3,
        "conversions": 2,
        "conversion_rate": 0.25,
        "click_rate": 0.4,
        "value": 99.5,
    }
    empty = arm_json({})
    assert empty["exposed"] == 0 and empty["conversion_rate"] is None
    assert empty["click_rate"] is None
