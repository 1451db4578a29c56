"""Models of the admin API the admin page adds (segserver/http/console_routes.py):
the site's schema, sizes with their history, rule checking, who wins, a visitor's
explain and history. docs/admin.md describes each answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from segserver.api.types import Body, Out, Rule, Slug


class RuleCheckIn(Body):
    rule: Rule | None = Field(None, description="the rule as JSON (give this or text)")
    text: str | None = Field(None, max_length=20_000,
                             description="the rule's text form (give this or rule)")  # fmt: skip
    segment: Slug | None = Field(None, description="the segment being edited: the rule "
                                 "may not refer to it")  # fmt: skip


class RuleCheckOut(Out):
    """The rule in both forms (the text is null when an attribute is named like a
    keyword of the text form)."""

    rule: dict[str, Any]
    text: str | None


class AttributeOut(Out):
    name: str
    kind: Literal["number", "timestamp", "date", "category", "flag", "tags"]
    window: bool = Field(description="keeps daily counters (windows and trends)")
    source: Literal["built-in", "custom", "event"]
    operators: list[str]
    text_form: bool = Field(description="can be written in the text form")
    values: list[str] | None = Field(None, description="strings seen so far (categories and "
                                     "tags), first seen first, at most 200")  # fmt: skip


class SegmentRef(Out):
    id: str
    name: str
    status: str
    type: str


class SchemaOut(Out):
    """What rules may use: attributes and segments."""

    site: str
    attributes: list[AttributeOut]
    events: list[dict[str, Any]]
    segments: list[SegmentRef]
    window_days: int
    duration_units: list[str]


class SizeOut(Out):
    size: int | None = Field(description="members now; null for drafts and archived ones")
    history: list[list[float]] = Field(description="[epoch seconds, size] points, oldest first")


class SizesOut(Out):
    """Every segment's size and size history."""

    sizes: dict[str, SizeOut]
    at: float


class WinnersOut(Out):
    """Per placement: campaigns by priority with eligible, wins and lost_to; segments
    named by their audiences with how their members split between the winners."""

    placements: dict[str, dict[str, Any]]
    at: float
    everyone: str | None


class ExplainOut(Out):
    """What a page view now would answer for the visitor, and why (nothing recorded)."""

    visitor_id: str
    at: float
    segments: list[str]
    decisions: dict[str, dict[str, Any] | None]
    rules: list[dict[str, Any]]
    placements: dict[str, list[dict[str, Any]]]
    global_holdout: bool
    held_out: list[str]
    caps: dict[str, Any]


class HistoryOut(Out):
    """The visitor's stored membership changes and its stored segments."""

    visitor_id: str
    changes: list[dict[str, Any]]
    stored: list[str]
