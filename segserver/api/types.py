"""Shared field types and base classes of the HTTP models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from segserver.profile.identity import SITE_ID_RE, VISITOR_ID_RE


class Body(BaseModel):
    """A request body: strict types (no "1" for 1), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    """A response body: the fields listed are always there; more may be added."""

    model_config = ConfigDict(extra="allow")


SiteId = Annotated[str, StringConstraints(pattern=SITE_ID_RE.pattern)]
VisitorId = Annotated[str, StringConstraints(pattern=VISITOR_ID_RE.pattern)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Version = Annotated[int, Field(ge=1, description="the version you edited (optimistic lock)")]
#: Epoch seconds, or an ISO 8601 time with a UTC offset.
Time = Annotated[
    float | str,
    Field(description="epoch seconds or ISO 8601 with an offset, e.g. 2026-11-01T00:00:00Z"),
]
#: A segment rule (docs/rules.md): a JSON tree of all/any/not and leaf comparisons;
#: checked by the rule compiler (422 naming the JSON path).
Rule = Annotated[
    dict[str, Any],
    Field(description="a segment rule (docs/rules.md), e.g. "
          '{"all": [{"attr": "total_spent", "op": "gt", "value": 1000}]}'),
]  # fmt: skip


class ErrorDetail(Out):
    code: str = Field(description="stable machine-readable name, e.g. invalid_input")
    message: str = Field(description="human-readable; names the field, e.g. "
                         "events[2].properties.value: must be a number")  # fmt: skip
    details: Any = None


class ErrorBody(Out):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail
