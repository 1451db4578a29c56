"""Models of the admin API: sites, their keys and admin tokens, visitors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from segserver.api.types import Body, Name, Out, SiteId, Version

AttributeKind = Literal["number", "timestamp", "date", "category", "flag", "tags"]
AttrName = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")


class AttributeIn(Body):
    name: str = AttrName
    kind: AttributeKind
    window: bool = Field(False, description="number attributes only: keep a daily window")


class CustomEventIn(Body):
    name: str = AttrName
    window: bool = False


class SchemaIn(Body):
    """Declared attributes and custom events; a change may only append."""

    attributes: list[AttributeIn] = Field(default_factory=list, max_length=200)
    events: list[CustomEventIn] = Field(default_factory=list, max_length=100)


class PolicyIn(Body):
    """The site-wide decision policy."""

    interruptive_per_session: int | None = Field(None, ge=0, le=1_000_000)
    interruptive_per_day: int | None = Field(None, ge=0, le=1_000_000)
    holdout: float = Field(0, ge=0, le=100, description="percent of visitors held out")


class OptionsIn(Body):
    """Options the server reads; others are kept as given."""

    model_config = ConfigDict(extra="allow", strict=True)
    policy: PolicyIn | None = None
    explain_public: bool | None = None
    webhook_networks: list[str] | None = Field(
        None, max_length=100, description="private networks (CIDR) this site's webhooks may "
        "reach, e.g. 10.0.0.0/8; loopback and link-local addresses are never reached "
        "unless listed")  # fmt: skip


Origin = Field(description='"*" or an origin like https://shop.example')


class SiteCreate(Body):
    id: SiteId
    name: Name | None = None
    origins: list[str] = Field(default_factory=list, max_length=100)
    schema_: SchemaIn | None = Field(None, alias="schema")
    options: OptionsIn | None = None
    prebuilt: bool = Field(True, description="install the prebuilt segments")


class SiteUpdate(Body):
    name: Name | None = None
    origins: list[str] | None = Field(None, max_length=100)
    schema_: SchemaIn | None = Field(None, alias="schema")
    options: OptionsIn | None = None
    version: Version | None = None


class SiteOut(Out):
    id: str
    name: str
    site_key: str = Field(description="public: goes into every page")
    origins: list[str]
    schema_: dict[str, Any] = Field(alias="schema")
    options: dict[str, Any]
    created_at: float = Field(description="epoch seconds")
    updated_at: float = Field(description="epoch seconds")
    version: int
    has_server_key: bool
    server_key: str | None = Field(None, description="secret, only in the answer that "
                                   "made it (creation, rotate-server-key): keep it on the "
                                   "shop's back end")  # fmt: skip


class SiteList(Out):
    sites: list[str]


class TokenCreate(Body):
    name: Name
    role: Literal["viewer", "editor", "admin"]


class TokenOut(Out):
    id: str
    name: str
    role: Literal["viewer", "editor", "admin"]
    site: str
    created_at: float
    token: str | None = Field(None, description="the bearer token, only when created")


class TokenList(Out):
    tokens: list[TokenOut]


class WhoAmI(Out):
    role: Literal["viewer", "editor", "admin", "root"]
    site: str | None = Field(description="null: the root token (every site)")
    token_id: str | None


class VisitorOut(Out):
    visitor_id: str
    site: str
    attributes: dict[str, Any]


class VisitorExport(Out):
    """Everything stored about one visitor (right of access)."""

    visitor_id: str
    site: str
    profile: dict[str, Any] | None
    membership: dict[str, Any]
    history: list[dict[str, Any]]
    caps: dict[str, Any]
    arms: dict[str, Any]
    recently_viewed: list[str]
    event_ids: list[str]
    feedback: list[str]
    scheduled_at: float | None
    changes: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
