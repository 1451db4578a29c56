"""Prometheus metrics (prometheus-client), one registry per running app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

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
        self.redis_round_trips = Counter(
            "segserver_redis_round_trips", "Redis round trips (a pipeline is one)", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
