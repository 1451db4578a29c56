"""Models of the admin API: segments, placements, content, campaigns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from segserver.api.types import Body, Name, Out, Rule, Slug, Text, Time, Version

Tag = Field(min_length=1, max_length=64)
RuleText = Annotated[str, Field(min_length=1, max_length=20_000, description=(
    "the rule in its text form (docs/rules.md), instead of rule, e.g. "
    "'total_spent > 1000 and country in [\"DE\", \"AT\"]'"))]  # fmt: skip


class SegmentCreate(Body):
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")  # look-ahead
    id: str = Field(
        pattern=r"^(?!(?:preview|query|overlap)$)[a-z0-9][a-z0-9_-]{0,63}$",
        description="a slug; not preview, query or overlap",
    )
    name: Name | None = None
    description: str | None = Field(None, max_length=2000)
    tags: list[str] | None = None
    type: Literal["dynamic", "static"] = "dynamic"
    status: Literal["draft", "active", "archived"] = "draft"
    priority: int = Field(0, ge=-1_000_000, le=1_000_000)
    rule: Rule | None = Field(None, description="required for dynamic segments (or rule_text)")
    rule_text: RuleText | None = None
    salt: str | None = Field(None, max_length=64, description="bucket salt")


class SegmentUpdate(Body):
    version: Version
    name: Name | None = None
    description: str | None = Field(None, max_length=2000)
    tags: list[str] | None = None
    type: Literal["dynamic", "static"] | None = None
    status: Literal["draft", "active", "archived"] | None = None
    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000)
    rule: Rule | None = None
    rule_text: RuleText | None = None
    salt: str | None = Field(None, max_length=64)


class Rollback(Body):
    to: int = Field(ge=1, description="the old version to bring back")
    version: Version | None = None


class SegmentOut(Out):
    id: str
    name: str
    description: str
    tags: list[str]
    type: Literal["dynamic", "static"]
    status: Literal["draft", "active", "archived"]
    priority: int
    rule: dict[str, Any]
    salt: str
    prebuilt: bool
    created_at: float
    updated_at: float
    version: int
    recompute_job: str | None = None


class SegmentList(Out):
    segments: list[SegmentOut]
    total: int
    page: int
    per_page: int


class Versions(Out):
    versions: list[dict[str, Any]] = Field(description="newest first; the first is current")


Kind = Literal["popup", "banner", "inline", "recommendations"]


class PlacementIn(Body):
    id: Slug
    name: Text | None = None
    kind: Kind
    interruptive: bool | None = Field(None, description="default: kind is popup")
    default_content: Slug | None = Field(None, description="a content id shown without a "
                                         "campaign (must exist)")  # fmt: skip
    version: Version | None = None


class PlacementPatch(Body):
    version: Version
    id: Slug | None = Field(None, description="cannot be changed")
    name: Text | None = None
    kind: Kind | None = None
    interruptive: bool | None = None
    default_content: Slug | None = None


class PayloadIn(Body):
    title: str | None = Field(None, min_length=1, max_length=200)
    body: Text | None = None
    image: str | None = Field(None, max_length=2000, pattern=r"^(https?://|/)")
    cta: str | None = Field(None, min_length=1, max_length=100)
    link: str | None = Field(None, max_length=2000, pattern=r"^(https?://|/)")
    strategy: Literal["recently_viewed", "popular", "popular_in_segment"] | None = None
    limit: int | None = Field(None, ge=1, le=50)
    segment: Slug | None = None


class ContentIn(Body):
    id: Slug
    name: Text | None = None
    kind: Kind
    payload: PayloadIn
    version: Version | None = None


class ContentPatch(Body):
    version: Version
    id: Slug | None = Field(None, description="cannot be changed")
    name: Text | None = None
    kind: Kind | None = None
    payload: PayloadIn | None = None


class Audience(Body):
    include: list[Slug] = Field(default_factory=list, description="segment ids")
    match: Literal["any", "all"] = "any"
    exclude: list[Slug] = Field(default_factory=list, description="segment ids")


class Schedule(Body):
    start: Time | None = None
    end: Time | None = None


class VariantIn(Body):
    id: Slug
    content: Slug = Field(description="a content id (must exist)")
    weight: float = Field(1, ge=0, le=1e6)


class CapIn(Body):
    per: Literal["session", "day", "week", "lifetime"]
    max: int = Field(ge=1, le=1_000_000)


class CampaignIn(Body):
    id: Slug
    name: Text | None = None
    placement: Slug = Field(description="a placement id (must exist)")
    status: Literal["draft", "active", "paused", "archived"] = "draft"
    priority: int = Field(0, ge=-1_000_000, le=1_000_000)
    audience: Audience | None = None
    schedule: Schedule | None = None
    variants: list[VariantIn] = Field(min_length=1, max_length=20)
    holdout: float = Field(0, ge=0, le=100)
    group: Slug | None = Field(None, description="exclusive group")
    caps: list[CapIn] = Field(default_factory=list, max_length=20)
    goals: list[Slug] = Field(
        default_factory=list, max_length=20, description="event types that count as conversions"
    )
    version: Version | None = None


class CampaignPatch(Body):
    version: Version
    id: Slug | None = Field(None, description="cannot be changed")
    name: Text | None = None
    placement: Slug | None = None
    status: Literal["draft", "active", "paused", "archived"] | None = None
    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000)
    audience: Audience | None = None
    schedule: Schedule | None = None
    variants: list[VariantIn] | None = Field(None, min_length=1, max_length=20)
    holdout: float | None = Field(None, ge=0, le=100)
    group: Slug | None = None
    caps: list[CapIn] | None = Field(None, max_length=20)
    goals: list[Slug] | None = Field(None, max_length=20)


class ItemOut(Out):
    """A placement, content or campaign as stored, with version and times."""

    id: str
    version: int
    created_at: float
    updated_at: float


class ItemList(Out):
    items: list[ItemOut] | None = None
