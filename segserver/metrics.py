"""Prometheus metrics (prometheus-client), one registry per running app."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# fine below 20 ms, where the page view's objectives are (p99 <= 5 ms, p99.9 <= 20 ms)
_LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
)
# an idle loop answers a probe in ~50 µs; anything holding it past 1 ms shows in the tail
_LAG_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "segserver_request_seconds", "Server time per request, by route and status class",
            ["route", "status"], registry=r, buckets=_LATENCY_BUCKETS)  # fmt: skip
        self.evaluation = Histogram(
            "segserver_evaluation_seconds", "Evaluating every active segment for one visitor",
            registry=r, buckets=(1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3))  # fmt: skip
        self.redis_errors = Counter("segserver_redis_errors", "Redis failures", ["kind"],
                                    registry=r)  # fmt: skip
        self.degraded = Counter("segserver_degraded_answers",
                                "Page views answered with the fallback", registry=r)  # fmt: skip
        self.events = Counter("segserver_events", "Events by outcome", ["status"], registry=r)
        # tells the processes of `serve --workers N` apart (bench http sums over them)
        self.process_id = Gauge("segserver_process_id", "This server process' id", registry=r)
        self.process_id.set(os.getpid())
        self.redis_round_trips = Counter(
            "segserver_redis_round_trips", "Redis round trips (a pipeline is one)", registry=r
        )
        # background loops (segserver.jobs.loop): `time() - last_success` is a loop's age
        self.loop_last_success = Gauge(
            "segserver_loop_last_success_timestamp_seconds",
            "Epoch seconds of a background loop's last successful round (its start before one)",
            ["loop"], registry=r)  # fmt: skip
        self.loop_failures = Counter(
            "segserver_loop_failures", "Failed rounds of a background loop", ["loop"], registry=r
        )
        self.loop_lag = Histogram(
            "segserver_event_loop_lag_seconds",
            "How long the event loop made an arriving callback wait (sampled 10 times a second)",
            registry=r, buckets=_LAG_BUCKETS)  # fmt: skip

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
