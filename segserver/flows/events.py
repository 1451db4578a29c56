"""`POST /v1/events`: a batch of events of any visitors of one site, from a browser or
a shop back end. Each visitor's events are applied atomically and in order (one call),
then the shared after-events step finishes each visitor (one call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segserver.catalogue.runtime import SiteContext
from segserver.errors import ForbiddenError, ValidationError
from segserver.flows.after_events import AfterEvents
from segserver.metrics import Metrics
from segserver.profile.events import SERVER_KEY_REQUIRED
from segserver.profile.ingest import REJECTED, Ingestor


@dataclass(frozen=True, slots=True)
class EventsAnswer:
    stored: int
    results: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"stored": self.stored, "results": self.results}


@dataclass
class Events:
    ingestor: Ingestor
    after: AfterEvents
    metrics: Metrics
    max_events: int

    def parse(self, body: Any) -> list[Any]:
        """`{events: [...]}` or a bare list of events (400 naming the problem)."""
        events = body.get("events") if isinstance(body, dict) else body
        if not isinstance(events, list):
            raise ValidationError("events: must be a list of events")
        if len(events) > self.max_events:
            raise ValidationError(f"events: more than {self.max_events} events in one request",
                                  code="too_many_events")  # fmt: skip
        if not events:
            raise ValidationError("events: empty")
        return events

    async def ingest(self, ctx: SiteContext, events: list[Any], now: float, *,
                     trusted: bool) -> EventsAnswer:  # fmt: skip
        """Store the valid events (`trusted`: the caller holds the site's server key)."""
        prepared = self.ingestor.prepare(ctx.data, events, now, trusted=trusted)
        results = prepared.results
        if all(r.status == REJECTED for r in results) and results[0].error is not None:
            # nothing in the request was usable: a plain 400 naming the (first) field,
            # 403 when every event was a trusted type sent with the public key
            first = results[0].error
            details = {"results": [r.to_json() for r in results]}
            if all(r.error is not None and r.error.code == SERVER_KEY_REQUIRED for r in results):
                raise ForbiddenError(first.message, code=SERVER_KEY_REQUIRED, details=details)
            raise ValidationError(first.message, code=first.code, details=details)
        result = await self.ingestor.store(ctx.data, prepared, now)
        for r in result.results:
            self.metrics.events.labels(r.status).inc()
        await self.after.after_batch(ctx, result, now)
        return EventsAnswer(result.stored, [r.to_json() for r in result.results])
