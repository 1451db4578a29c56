"""Models of the public API (site key or server key)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from segserver.api.types import Body, Out, SiteId, Slug, VisitorId

MAX_EVENTS = 100  # settings.max_events_per_request's default; the server enforces its own
MAX_PLACEMENTS = 20


class EventIn(Body):
    """One event. Which types a public site key may send, and each type's properties:
    config/events.toml (GET /openapi.json lists them under `x-event-types`)."""

    visitor_id: VisitorId | None = Field(None, description="required in POST /v1/events")
    type: str = Field(description="an event type: built-in or declared by the site")
    ts: float | str | None = Field(None, description="epoch seconds or ISO 8601; default now")
    event_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="idempotency key: a retry is not counted twice",
    )
    properties: dict[str, Any] | None = None


_EACH = (
    "each an EventIn (components/schemas/EventIn); an invalid one is rejected on its "
    "own (its result in the answer says why) and the others are stored"
)


class PageViewBody(Body):
    visitor_id: VisitorId
    events: list[Any] | None = Field(None, max_length=MAX_EVENTS, description=_EACH)
    placements: list[Slug] | None = Field(None, max_length=MAX_PLACEMENTS)
    explain: bool = Field(
        False,
        description="with the server key, a root token or the "
        "site option explain_public: why each segment and campaign",
    )
    site: SiteId | None = Field(None, description="if given, must be the key's site")


class EventsBody(Body):
    events: list[Any] = Field(min_length=1, max_length=MAX_EVENTS, description=_EACH)


class ContentOut(Out):
    id: str
    kind: Literal["popup", "banner", "inline", "recommendations"]
    payload: dict[str, Any]
    products: list[str] | None = Field(None, description="recommendations: product ids")


class Placed(Out):
    campaign: str | None
    variant: str | None
    content: ContentOut | None
    token: str | None = Field(
        description="decision token for impression/click/dismiss/"
        "conversion feedback; expires (decision_token_ttl_seconds)"
    )


class EventError(Out):
    code: str
    message: str


class EventResult(Out):
    index: int
    status: Literal["stored", "duplicate", "rejected", "not_stored", "pending", "rate_limited"]
    error: EventError | None = None


class PageViewAnswer(Out):
    visitor_id: str
    segments: list[str]
    decisions: dict[str, Placed | None]
    events: list[EventResult]
    degraded: bool = Field(
        description="true: Redis slow or down, or over a quota: each "
        "placement's default content, nothing stored"
    )
    catalogue_version: str
    explain: dict[str, Any] | None = None


class EventsAnswer(Out):
    stored: int
    results: list[EventResult]


class VisitorSegments(Out):
    visitor_id: str
    segments: list[str]
    degraded: bool
