"""The fault figures' arithmetic: lost and doubled events from what was sent and what
the profiles count, and when the affected visitors' answers were full again."""

from __future__ import annotations

import math

from segserver.bench.faultload import Tally, reconcile
from segserver.bench.faults import _recovered


def test_reconcile_counts_lost_and_doubled_per_visitor() -> None:
    tally = Tally(sent={"a": {"1", "2", "3"}, "b": {"4"}, "c": {"5", "6"}})
    figures = reconcile(tally, {"a": 3, "b": 2, "c": 1}, acked_during=5)
    assert (figures.acknowledged, figures.lost, figures.doubled, figures.visitors) == (5, 1, 1, 3)


def test_recovery_is_the_first_of_a_streak_of_full_answers_after_the_fault() -> None:
    timeline = [(0.5, "affected", "ok"), (1.0, "affected", "degraded"),
                (1.5, "healthy", "degraded"), (2.0, "affected", "ok"), (2.5, "affected", "503"),
                (3.0, "affected", "ok"), (3.5, "healthy", "ok"), (4.0, "affected", "events ok"),
                (4.5, "affected", "ok")]  # fmt: skip
    tally = Tally(timeline=timeline)
    assert _recovered(tally, fault_at=1.0, streak=3) == 3.0
    assert math.isnan(_recovered(tally, fault_at=1.0, streak=4))
