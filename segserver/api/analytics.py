"""Models of the admin API: analytics, static members, jobs, triggers, results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from segserver.api.types import Body, Name, Out, Rule, Slug, VisitorId

Expression = Field(description='a segment id, {"or": [...]}, {"and": [..., {"not": ...}]}')


class PreviewIn(Body):
    rule: Rule
    sample_size: int | None = Field(None, ge=100, le=1_000_000)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


class StaticSpec(Body):
    id: Slug
    name: Name | None = None
    description: str | None = Field(None, max_length=2000)
    tags: list[str] | None = None


class QueryIn(Body):
    expression: str | dict[str, Any] = Expression
    save_as: StaticSpec | None = Field(None, description="save the result as a static "
                                       "segment (editor role)")  # fmt: skip


class OverlapIn(Body):
    ids: list[Slug] = Field(min_length=1, max_length=50)


class MembersIn(Body):
    visitor_ids: list[VisitorId] = Field(max_length=1_000_000)
    mode: Literal["replace", "add"] | None = None


class PreviewOut(Out):
    count: int
    took_ms: float


class QueryOut(Out):
    count: int
    sample: list[str]
    took_ms: float
    saved: dict[str, Any] | None = None


class OverlapOut(Out):
    ids: list[str]
    matrix: list[list[int]]
    took_ms: float


class StatsOut(Out):
    id: str
    type: str
    size: int
    history: list[dict[str, float]] = Field(description='{"t": epoch seconds, "size": n}')


class MembersOut(Out):
    id: str
    added: int
    unknown_count: int
    unknown: list[str]
    size: int


class JobIn(Body):
    kind: Literal["recompute"]


class JobOut(Out):
    id: str
    state: Literal["running", "interrupted", "done", "failed"] = Field(
        description="interrupted: stopped by a shutdown, resumed by the next server; "
        "failed: see `error`, tried again at `retry_at` when not null"
    )
    done: int
    total: int
    percent: float
    attempts: int = Field(0, description="failed runs so far")
    retry_at: float | None = Field(
        None,
        description="epoch seconds; set while a job that failed on Redis waits to be "
        "tried again from its last committed page",
    )


class JobList(Out):
    jobs: list[JobOut]


class TriggerIn(Body):
    url: str = Field(max_length=2048, pattern=r"^https?://",
                     description="http(s) URL; private, loopback and link-local addresses "
                     "are refused when connecting (docs/security.md)")  # fmt: skip
    segments: list[Slug] = Field(
        default_factory=list, max_length=100, description="empty: every segment"
    )
    changes: Literal["entered", "exited", "both"] = "both"
    active: bool = True


class TriggerPatch(Body):
    url: str | None = Field(None, max_length=2048, pattern=r"^https?://")
    segments: list[Slug] | None = Field(None, max_length=100)
    changes: Literal["entered", "exited", "both"] | None = None
    active: bool | None = None
    version: int | None = Field(None, ge=1)


class TriggerOut(Out):
    id: str
    site: str
    url: str
    segments: list[str]
    changes: str
    active: bool
    created_at: float
    updated_at: float
    version: int
    secret: str | None = Field(None, description="signing secret, only when created")


class DeliveryCounts(Out):
    delivered: int = Field(description="attempts the receiver answered with a 2xx")
    failed: int = Field(description="attempts that failed (each retry counts)")
    last_at: float | None = Field(description="the latest attempt, epoch seconds")
    last: Literal["delivered", "failed"] | None = Field(description="its outcome")


class TriggerListed(TriggerOut):
    deliveries: DeliveryCounts


class TriggerList(Out):
    triggers: list[TriggerListed]
    retrying: int = Field(description="deliveries of the site waiting for a retry now")


class DeadLetters(Out):
    dead_letters: list[dict[str, Any]]
    total: int


class RedriveIn(Body):
    ids: list[str] | None = Field(None, max_length=10_000)
    subscription: str | None = None


class Redriven(Out):
    redriven: int


class Results(Out):
    site: str
    campaign: str
    goals: list[str]
    holdout_percent: float
    variants: list[dict[str, Any]]
    holdout: dict[str, Any]
