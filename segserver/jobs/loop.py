"""One shared run-forever loop: every background loop of a server process (exact
expiry, size-history snapshots, trigger delivery) runs through `Loops.start`.

A round that raises anything below cancellation does not end its loop (a raw
redis-py TimeoutError out of redis-om once ended the expiry scheduler for good,
issue 13): the failure is logged without flooding the log (`FailureLog`), counted in
/metrics, and the round is tried again after an exponential back-off with jitter.
Every successful round is recorded, so /metrics shows when each loop last succeeded
and /readyz names the loops that stopped making progress (`Loops.stale`).

`LagProbe` measures what this is all for: how long the event loop makes a newly
arrived request wait (the `segserver_event_loop_lag_seconds` histogram).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from segserver.errors import SegserverError
from segserver.metrics import Metrics

log = logging.getLogger("segserver.loops")

#: One round of a loop; returns True when more work is already waiting (the next
#: round then starts at once, after letting the event loop's other callbacks run).
Round = Callable[[], Awaitable[bool]]

_NUMBERS = re.compile(r"\d+")


def backoff(failures: int, low: float, high: float, rand: float) -> float:
    """Delay after the `failures`-th failed round in a row: low · 2^(failures-1), never
    more than `high`, with "equal jitter" (a uniform half of it, `rand` in [0, 1)), so
    the processes that failed together do not retry together: in [d/2, d]."""
    full = min(high, low * 2.0 ** min(failures - 1, 60))
    return full / 2 + full / 2 * rand


def describe(exc: BaseException) -> str:
    """The exception's class and message, for the log."""
    text = exc.message if isinstance(exc, SegserverError) else str(exc)
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def failure_kind(exc: BaseException) -> str:
    """What makes two failures "the same" for the log: `describe(exc)` with the
    numbers blanked (ports, pids and counters vary between attempts)."""
    return _NUMBERS.sub("#", describe(exc))


class FailureLog:
    """A loop's failures in the log without a flood. During a streak of failures
    each distinct kind is logged once (a foreign exception with its traceback), at
    most `burst` lines per `every` seconds; while the loop keeps failing one summary
    line follows per `every` seconds; its recovery is one line. (Before this, every
    degraded answer logged a line: 7.4 MB of log in one 14 s outage, issue 13.)"""

    def __init__(
        self, name: str, *, every: float = 60.0, burst: int = 3,
        clock: Callable[[], float] = time.monotonic, logger: logging.Logger = log,
    ) -> None:  # fmt: skip
        self.name = name
        self.every = every
        self.burst = burst
        self.clock = clock
        self.log = logger
        self._since: float | None = None  # start of the current streak
        self._failures = 0  # in the current streak
        self._seen: set[str] = set()  # kinds logged in the current streak
        self._window = -float("inf")  # start of the current rate-limit window
        self._lines = 0  # lines written in the current window
        self._last_line = -float("inf")

    def failed(self, exc: BaseException) -> None:
        now = self.clock()
        if self._since is None:
            self._since, self._failures, self._seen = now, 0, set()
        self._failures += 1
        if now - self._window >= self.every:
            self._window, self._lines = now, 0
        kind = failure_kind(exc)
        if kind not in self._seen and self._lines < self.burst:
            self._seen.add(kind)
            self._line(now)
            # a foreign exception got past the layer that should have wrapped it: where
            foreign = not isinstance(exc, SegserverError)
            self.log.warning("%s loop: a round failed (%s); retrying with back-off", self.name,
                             describe(exc), exc_info=exc if foreign else None)  # fmt: skip
            return
        if now - self._last_line >= self.every:
            self._line(now)
            since = now - self._since
            self.log.warning("%s loop: still failing, %d rounds failed in %.0f s (latest: %s)",
                             self.name, self._failures, since, describe(exc))  # fmt: skip

    def recovered(self) -> None:
        """A round succeeded: one line if it ends a streak of failures."""
        if self._since is None:
            return
        self.log.warning("%s loop: recovered after %d failed rounds in %.1f s", self.name,
                         self._failures, self.clock() - self._since)  # fmt: skip
        self._since = None
        self._failures = 0

    def _line(self, now: float) -> None:
        self._lines += 1
        self._last_line = now


@dataclass
class LoopState:
    """What /readyz and /metrics tell about one loop."""

    name: str
    period: float  # seconds between successful rounds when all is well
    last_success: float  # monotonic time of the last successful round (start before one)
    last_progress: float = -float("inf")  # monotonic time of the last `Loops.beat`
    failures: int = 0  # failed rounds in a row
    error: str = ""  # class of the latest failure while failing, else ""

    def age(self, now: float) -> float:
        """Seconds since the loop last succeeded or, inside a long round, made progress."""
        return max(0.0, now - max(self.last_success, self.last_progress))


@dataclass
class _Running:
    state: LoopState
    stop: asyncio.Event
    task: asyncio.Task[None]


class Loops:
    """The background loops of one server process, each run until stopped through
    failures of any kind; `stale()` names those with neither a successful round nor
    progress (`beat`) for longer than their period plus `stale_after` seconds."""

    def __init__(
        self, metrics: Metrics | None = None, *, stale_after: float = 30.0,
        backoff_max: float = 5.0, backoff_min: float = 0.1, log_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:  # fmt: skip
        if stale_after <= 0 or backoff_min <= 0 or backoff_max < backoff_min:
            raise ValueError("need stale_after > 0 and 0 < backoff_min <= backoff_max")
        self.metrics = metrics
        self.stale_after = stale_after
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.log_every = log_every
        self.clock = clock
        self.wall = wall
        self.rand = rand
        self._running: dict[str, _Running] = {}

    def start(
        self, name: str, round_: Round, *, pause: float | Callable[[], float],
        period: float | None = None,
    ) -> None:  # fmt: skip
        """Run `round_` until `stop(name)`: after a round with nothing left to do wait
        `pause` seconds (a number or a function giving it), after a busy one go on at
        once, after a failure back off. `period` (default: `pause`) is how often the
        loop succeeds when all is well; staleness is counted past it."""
        if name in self._running:
            raise ValueError(f"loop {name!r} is already running")
        wait = pause if callable(pause) else (lambda: float(pause))
        state = LoopState(name, wait() if period is None else period, self.clock())
        if self.metrics is not None:
            self.metrics.loop_last_success.labels(name).set(self.wall())
            self.metrics.loop_failures.labels(name)
        stop = asyncio.Event()
        task = asyncio.create_task(self._run(state, round_, wait, stop), name=f"segserver-{name}")
        task.add_done_callback(self._ended)
        self._running[name] = _Running(state, stop, task)

    async def stop(self, name: str, grace: float = 10.0) -> None:
        """Let the loop finish its current round (at most `grace` seconds, then it is
        cancelled) and forget it."""
        running = self._running.pop(name, None)
        if running is None:
            return
        running.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(running.task), grace)
        except TimeoutError:
            log.warning("%s loop: did not stop within %.0f s; cancelled", name, grace)
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
        except asyncio.CancelledError:
            if not running.task.cancelled():
                raise  # the caller is being cancelled, not the loop

    async def stop_all(self, grace: float = 10.0) -> None:
        await asyncio.gather(*(self.stop(name, grace) for name in list(self._running)))

    def beat(self, name: str) -> None:
        """A round of loop `name` made progress: inside a long round (deliveries to
        slow webhooks take up to their time-out each) the loop is not stale."""
        running = self._running.get(name)
        if running is not None:
            running.state.last_progress = self.clock()

    def states(self) -> list[LoopState]:
        return [r.state for r in self._running.values()]

    def stale(self) -> list[str]:
        """Names of the loops with no successful round (nor progress) for longer than
        their period plus `stale_after` seconds (failing all along, or stuck)."""
        now = self.clock()
        return [s.name for s in self.states() if s.age(now) > s.period + self.stale_after]

    async def _run(
        self, state: LoopState, round_: Round, pause: Callable[[], float], stop: asyncio.Event
    ) -> None:
        failures = FailureLog(state.name, every=self.log_every, clock=self.clock)
        task = asyncio.current_task()
        while not stop.is_set():
            try:
                busy = await round_()
            except Exception as exc:  # everything below cancellation: the loop goes on
                state.failures += 1
                state.error = type(exc).__name__
                failures.failed(exc)
                if self.metrics is not None:
                    self.metrics.loop_failures.labels(state.name).inc()
                wait = backoff(state.failures, self.backoff_min, self.backoff_max, self.rand())
            else:
                failures.recovered()
                state.failures, state.error = 0, ""
                state.last_success = self.clock()
                if self.metrics is not None:
                    self.metrics.loop_last_success.labels(state.name).set(self.wall())
                wait = 0.0 if busy else pause()
            if task is not None and task.cancelling():
                # redis-py may swallow a cancellation that lands inside a command
                raise asyncio.CancelledError
            if wait <= 0:
                await asyncio.sleep(0)  # requests waiting on the loop go first
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    @staticmethod
    def _ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # only a BaseException other than cancellation gets here (SystemExit ...)
            log.error("%s ended: %r", task.get_name(), task.exception())


class LagProbe:
    """How long the event loop makes a newly arrived request wait. Every `every`
    seconds a thread schedules a callback with `call_soon_threadsafe` (which wakes
    the loop the way a readable socket does) and the loop reports how late it ran
    it. A timer in the loop itself would measure the selector's whole-millisecond
    rounding too (up to 1 ms); a thread does not. A loop held for a long time is
    sampled all along: the histogram is weighted by time, like arriving requests.

    Each probe costs ~0.2 ms of CPU on this VM (thread wake-up ~80 µs, the loop's
    wake-up through its self-pipe the rest), so the default is 10 a second: 0.23 %
    of a core (50 a second measured 1.1 %)."""

    def __init__(self, observe: Callable[[float], None], every: float = 0.1) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        self.observe = observe
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._thread is not None:
            raise RuntimeError("the probe is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._send, args=(loop,), name="segserver-lag-probe", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join()

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.wait(self.every):
            try:
                loop.call_soon_threadsafe(self._arrived, time.perf_counter())
            except RuntimeError:  # the loop is closed
                return

    def _arrived(self, sent: float) -> None:
        self.observe(time.perf_counter() - sent)
