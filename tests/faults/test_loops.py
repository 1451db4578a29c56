"""The shared run-forever loop (segserver.jobs.loop) against rounds that fail in
every way below cancellation, its staleness report and its stop; the lag probe; and
the expiry scheduler yielding the event loop between small batches."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
import redis.exceptions

from segserver.catalogue.runtime import SiteContext
from segserver.errors import StorageError
from segserver.jobs import expiry as expiry_module
from segserver.jobs.expiry import ExpiryScheduler
from segserver.jobs.loop import LagProbe, Loops
from segserver.membership import evaluate_visitor
from segserver.metrics import Metrics
from segserver.wiring import Services


class Script:
    """A round that raises the given exceptions in turn, then succeeds; counts calls."""

    def __init__(self, *outcomes: BaseException | bool) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.done = asyncio.Event()

    async def __call__(self) -> bool:
        self.calls += 1
        if not self.outcomes:
            self.done.set()
            return False
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def fast_loops(metrics: Metrics | None = None, **kw: Any) -> Loops:
    return Loops(metrics, backoff_min=0.001, backoff_max=0.002, **kw)


async def test_no_failure_below_cancellation_ends_a_loop() -> None:
    metrics = Metrics()
    loops = fast_loops(metrics)
    round_ = Script(redis.exceptions.TimeoutError("Timeout reading from socket"),
                    StorageError("down"), AttributeError("'NoneType' has no 'writelines'"),
                    KeyError("x"), ZeroDivisionError())  # fmt: skip
    loops.start("x", round_, pause=0.001)
    await asyncio.wait_for(round_.done.wait(), 10)
    [state] = loops.states()
    assert (state.failures, state.error, round_.calls) == (0, "", 6)
    text = metrics.exposition().decode()
    assert 'segserver_loop_failures_total{loop="x"} 5.0' in text
    assert 'segserver_loop_last_success_timestamp_seconds{loop="x"}' in text
    await loops.stop("x")
    assert loops.states() == []


async def test_a_failing_loop_is_stale_past_its_period_plus_the_threshold() -> None:
    now = [100.0]
    loops = fast_loops(stale_after=10, clock=lambda: now[0])
    fails = asyncio.Event()

    async def failing() -> bool:
        fails.set()
        raise StorageError("down")

    loops.start("expiry", failing, pause=0.25)
    loops.start("history", Script(), pause=300)
    await asyncio.wait_for(fails.wait(), 10)
    now[0] += 10.25
    assert loops.stale() == []  # exactly period + threshold: not yet
    now[0] += 0.01
    assert loops.stale() == ["expiry"]
    now[0] += 300
    assert loops.stale() == ["expiry", "history"]  # no round since its start
    [expiry] = [s for s in loops.states() if s.name == "expiry"]
    assert expiry.failures > 0 and expiry.error == "StorageError"
    loops.beat("history")  # progress inside a long round counts
    assert loops.stale() == ["expiry"]
    now[0] += 310.01
    assert loops.stale() == ["expiry", "history"]
    await loops.stop_all()


async def test_busy_rounds_let_other_callbacks_run_between_them() -> None:
    loops = fast_loops()
    ticks = 0
    stop = asyncio.Event()

    async def other() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    round_ = Script(*[True] * 50)  # 50 rounds that say more work is waiting, no I/O
    task = asyncio.create_task(other())
    loops.start("busy", round_, pause=60)
    await asyncio.wait_for(round_.done.wait(), 10)
    stop.set()
    await task
    await loops.stop("busy")
    assert ticks >= 50


async def test_stop_waits_for_the_round_then_cancels_after_the_grace() -> None:
    loops = fast_loops()
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow() -> bool:
        started.set()
        await asyncio.sleep(0.05)
        finished.set()
        return False

    loops.start("slow", slow, pause=60)
    await started.wait()
    await loops.stop("slow")
    assert finished.is_set()  # the round in progress was let finish

    hung = asyncio.Event()

    async def stuck() -> bool:
        hung.set()
        await asyncio.Event().wait()
        return False

    loops.start("stuck", stuck, pause=60)
    await hung.wait()
    await loops.stop("stuck", grace=0.05)  # cancelled: returns
    assert loops.states() == []
    loops.start("again", Script(), pause=1)
    with pytest.raises(ValueError, match="already running"):
        loops.start("again", Script(), pause=1)
    await loops.stop_all()


async def test_lag_probe_sees_a_callback_holding_the_loop() -> None:
    seen: list[float] = []
    arrived = asyncio.Event()

    def observe(lag: float) -> None:
        seen.append(lag)
        arrived.set()

    probe = LagProbe(observe, every=0.01)
    probe.start(asyncio.get_running_loop())
    await arrived.wait()
    time.sleep(0.2)  # noqa: ASYNC251 - the point: a callback holding the event loop
    arrived.clear()
    await arrived.wait()  # the probes sent meanwhile run now
    probe.stop()
    # a probe sent during the 200 ms hold waited for its end: at least 100 ms of it
    assert max(seen) >= 0.1


async def test_expiry_yields_the_loop_between_small_batches(
    services: Services, shop_ctx: SiteContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = services.clock()
    for i in range(100):
        result = await services.ingestor.ingest(shop_ctx.data, [{"type": "page_view"}], now,
                                                visitor_id=f"v{i}")  # fmt: skip
        await services.pageviews.after.after_batch(shop_ctx, result, now)
    expiry = ExpiryScheduler(services.runtime, services.due, services.membership, services.keys,
                             site_ids=lambda: ["shop"], batch=8)  # fmt: skip
    ticks = 0
    at_tick: list[int] = []  # the tick during which each visitor was evaluated

    def evaluate(*args: Any) -> Any:
        at_tick.append(ticks)
        return evaluate_visitor(*args)

    monkeypatch.setattr(expiry_module, "evaluate_visitor", evaluate)
    stop = asyncio.Event()

    async def page_views() -> None:  # a stand-in for requests waiting on the loop
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(page_views())
    assert await expiry.run_once(now + 3601, limit=60) == 60  # one round's limit
    assert await expiry.run_once(now + 3601) == 40
    stop.set()
    await task
    assert len(at_tick) == 100
    # never more than one batch evaluated without the loop running something else
    assert max(Counter(at_tick).values()) <= 8


@pytest.fixture
async def shop_ctx(services: Services) -> SiteContext:
    await services.sites.create({"id": "shop", "name": "Shop"})
    ctx = await services.runtime.get("shop")
    rule = {"attr": "last_seen", "op": "within", "value": "1h"}
    await services.segments.create("shop", {"id": "active", "status": "active", "rule": rule},
                                   ctx.data.schema.layout, ctx.data.vocab)  # fmt: skip
    services.runtime.forget("shop")
    return await services.runtime.get("shop")
