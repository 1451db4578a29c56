"""The background loops' failure log and back-off (segserver.jobs.loop): pure, with
an injected clock. An outage of any length gives a few lines, not one per round."""

from __future__ import annotations

import logging

import pytest

from segserver.errors import StorageError
from segserver.jobs.loop import FailureLog, backoff, failure_kind


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "t"]


@pytest.fixture
def logbook(caplog: pytest.LogCaptureFixture) -> tuple[FailureLog, Clock]:
    caplog.set_level(logging.INFO, logger="t")
    clock = Clock()
    return FailureLog("x", every=60, burst=3, clock=clock, logger=logging.getLogger("t")), clock


def test_one_line_per_kind_then_one_summary_a_minute(
    logbook: tuple[FailureLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    failures, clock = logbook
    for i in range(1000):  # a round every 0.1 s for 100 s, all the same kind of failure
        clock.now = 1000.0 + i / 10
        failures.failed(StorageError(f"Error 111 connecting to 127.0.0.1:{6000 + i % 7}"))
    clock.now = 1100.0
    got = lines(caplog)
    assert got[0] == (
        "x loop: a round failed (StorageError: Error 111 connecting to 127.0.0.1:6000); "
        "retrying with back-off"
    )
    assert len(got) == 2
    assert got[1].startswith("x loop: still failing, 601 rounds failed in 60 s (latest: ")
    failures.recovered()
    assert lines(caplog)[-1] == "x loop: recovered after 1000 failed rounds in 100.0 s"


def test_distinct_kinds_are_logged_up_to_the_burst(
    logbook: tuple[FailureLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    failures, clock = logbook
    for exc in [StorageError("a"), KeyError("b"), StorageError("a"), TimeoutError(),
                RuntimeError("c"), RuntimeError("d")]:  # fmt: skip
        failures.failed(exc)
    got = lines(caplog)
    assert [m.split("(")[1].split(")")[0] for m in got] == [
        "StorageError: a", "KeyError: 'b'", "TimeoutError"
    ]  # fmt: skip
    foreign = [r for r in caplog.records if r.name == "t" and r.exc_info]
    assert len(foreign) == 2  # KeyError and TimeoutError come with their traceback
    clock.now += 61  # a new window: the kind not logged yet gets its line
    failures.failed(RuntimeError("c"))
    assert lines(caplog)[-1].startswith("x loop: a round failed (RuntimeError: c)")


def test_after_a_recovery_the_same_failure_is_news_again(
    logbook: tuple[FailureLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    failures, clock = logbook
    failures.recovered()  # no streak: nothing to say
    assert lines(caplog) == []
    failures.failed(StorageError("down"))
    failures.recovered()
    clock.now += 61
    failures.failed(StorageError("down"))
    assert [m.split(" (")[0] for m in lines(caplog)] == [
        "x loop: a round failed", "x loop: recovered after 1 failed rounds in 0.0 s",
        "x loop: a round failed",
    ]  # fmt: skip


def test_failure_kind_ignores_numbers_only() -> None:
    assert failure_kind(StorageError("port 6379 pid 12")) == failure_kind(
        StorageError("port 7000 pid 9")
    )
    assert failure_kind(StorageError("refused")) != failure_kind(StorageError("timeout"))
    assert failure_kind(StorageError("x")) != failure_kind(RuntimeError("x"))


@pytest.mark.parametrize(
    ("failures", "rand", "want"),
    [
        (1, 0.0, 0.05),
        (1, 1.0, 0.1),
        (2, 1.0, 0.2),
        (3, 0.5, 0.3),
        (6, 1.0, 3.2),
        (7, 1.0, 5.0),
        (10_000, 0.0, 2.5),
    ],
)
def test_backoff_doubles_with_equal_jitter_up_to_the_cap(
    failures: int, rand: float, want: float
) -> None:
    assert backoff(failures, 0.1, 5.0, rand) == pytest.approx(want)
