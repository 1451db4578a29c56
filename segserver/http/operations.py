"""Every operation of the API in one table: method, path, who may call it (the admin
middleware enforces `role` from here), and the models of its body and answers (the
OpenAPI document at /openapi.json is generated from here, segserver.http.openapi).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from segserver.api import analytics as an
from segserver.api import catalogue as cat
from segserver.api import console as co
from segserver.api import public as pub
from segserver.api import sites as st
from segserver.trust.auth import Role

PUBLIC = "public"  # site key (or the server key)
SERVER = "server"  # the site's server key only
OPEN = "open"  # no credentials


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    access: Role | str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    ok: int = 200
    answer: type[BaseModel] | str | None = None  # a model, "csv", "text" or None (no body)
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    csv_body: bool = False  # also accepts text/csv (static members)
    body_optional: bool = False  # an empty body is taken as {}
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


S = "/v1/admin/sites/{site}"
V, E, A, R = Role.VIEWER, Role.EDITOR, Role.ADMIN, Role.ROOT
_INT = {"type": "integer"}
_STR = {"type": "string"}

# fmt: off
OPS: list[Op] = [
    # public
    Op("POST", "/v1/context", PUBLIC, "A page view: events, segments and decisions in one "
       "round trip", "public", pub.PageViewBody, 200, pub.PageViewAnswer, errors=(429,),
       description="Behavioural events only with the public site key (trusted types are "
       "rejected per event with code server_key_required); every type with the server "
       "key (a back end rendering the page). Over a quota the answer is the degraded one "
       "(each placement's default content) with Retry-After."),
    Op("POST", "/v1/events", PUBLIC, "A batch of events of any visitors of the site",
       "public", pub.EventsBody, 202, pub.EventsAnswer, errors=(429,),
       description="Trusted event types (purchase, refund, signup, login, identify, "
       "e-mail and support events) need the server key: Authorization: Bearer <server "
       "key>. A bare JSON list of events is accepted too."),
    Op("GET", "/v1/visitors/{visitor}/segments", SERVER, "A visitor's segments now",
       "public", None, 200, pub.VisitorSegments, errors=(429,)),
    # sites, keys, tokens
    Op("GET", "/v1/admin/whoami", V, "The caller's role and site", "sites", None, 200,
       st.WhoAmI),
    Op("POST", "/v1/admin/sites", R, "Create a site (root token)", "sites", st.SiteCreate,
       201, st.SiteOut, errors=(409,)),
    Op("GET", "/v1/admin/sites", V, "Sites the caller may see", "sites", None, 200,
       st.SiteList),
    Op("GET", S, V, "A site", "sites", None, 200, st.SiteOut),
    Op("PATCH", S, A, "Change a site (name, origins, schema: append only, options)",
       "sites", st.SiteUpdate, 200, st.SiteOut, errors=(409,)),
    Op("POST", S + "/rotate-key", A, "A new public site key", "sites", None, 200, st.SiteOut),
    Op("POST", S + "/rotate-server-key", A, "A new secret server key (shown once)", "sites",
       None, 200, st.SiteOut),
    Op("PUT", S + "/policy", E, "The site-wide decision policy", "campaigns", st.PolicyIn,
       200, st.PolicyIn),
    Op("GET", S + "/tokens", A, "The site's admin tokens (never their secrets)", "sites",
       None, 200, st.TokenList),
    Op("POST", S + "/tokens", A, "A new admin token with a role (shown once)", "sites",
       st.TokenCreate, 201, st.TokenOut),
    Op("DELETE", S + "/tokens/{id}", A, "Revoke an admin token", "sites", None, 204, None),
    # visitors
    Op("GET", S + "/visitors/{visitor}", V, "A visitor's profile", "visitors", None, 200,
       st.VisitorOut),
    Op("GET", S + "/visitors/{visitor}/export", V, "Everything stored about a visitor",
       "visitors", None, 200, st.VisitorExport),
    Op("DELETE", S + "/visitors/{visitor}", A, "Erase a visitor: every trace, exits "
       "emitted", "visitors", None, 204, None),
    # segments
    Op("GET", S + "/segments", V, "Segments: search, filter, sort, page", "segments", None,
       200, cat.SegmentList, query=(
           Param("q", _STR, "search in name and description"),
           Param("status", {"enum": ["draft", "active", "archived"]}),
           Param("type", {"enum": ["dynamic", "static"]}),
           Param("tag", _STR),
           Param("sort", {"enum": [p + k for k in ("id", "name", "priority", "created_at",
                                                   "updated_at", "status") for p in ("", "-")]}),
           Param("page", {"type": "integer", "minimum": 1, "maximum": 100_000}),
           Param("per_page", {"type": "integer", "minimum": 1, "maximum": 500}))),
    Op("POST", S + "/segments", E, "Create a segment", "segments", cat.SegmentCreate, 201,
       cat.SegmentOut, errors=(409, 422)),
    Op("GET", S + "/segments/{segment}", V, "A segment", "segments", None, 200, cat.SegmentOut),
    Op("PUT", S + "/segments/{segment}", E, "Change a segment", "segments", cat.SegmentUpdate,
       200, cat.SegmentOut, errors=(409, 422)),
    Op("PATCH", S + "/segments/{segment}", E, "Change a segment", "segments",
       cat.SegmentUpdate, 200, cat.SegmentOut, errors=(409, 422)),
    Op("DELETE", S + "/segments/{segment}", E, "Delete a segment (409 naming referrers)",
       "segments", None, 204, None, errors=(409,)),
    Op("GET", S + "/segments/{segment}/versions", V, "A segment's versions", "segments",
       None, 200, cat.Versions),
    Op("POST", S + "/segments/{segment}/rollback", E, "Bring back an old version",
       "segments", cat.Rollback, 200, cat.SegmentOut, errors=(409, 422)),
    Op("GET", S + "/segments/{segment}/stats", V, "Size now and size history", "analytics",
       None, 200, an.StatsOut, query=(Param("since", {"type": "number"}, "epoch seconds"),)),
    Op("GET", S + "/segments/{segment}/members.csv", V, "Members as CSV", "analytics", None,
       200, "csv", query=(Param("attrs", _STR, "attribute names, comma separated"),)),
    Op("POST", S + "/segments/{segment}/members", E, "Upload a static segment's members",
       "analytics", an.MembersIn, 200, an.MembersOut, errors=(409,), csv_body=True,
       query=(Param("mode", {"enum": ["replace", "add"]}),)),
    Op("POST", S + "/segments/{segment}/freeze", E, "Freeze members into a new static "
       "segment", "analytics", an.StaticSpec, 201, cat.SegmentOut, errors=(409,)),
    Op("POST", S + "/segments/preview", V, "Count and sample of a draft rule", "analytics",
       an.PreviewIn, 200, an.PreviewOut, errors=(422,)),
    Op("POST", S + "/segments/query", V, "Count of a set expression (save_as: editor)",
       "analytics", an.QueryIn, 200, an.QueryOut, errors=(409,)),
    Op("POST", S + "/segments/overlap", V, "Overlap matrix of segments", "analytics",
       an.OverlapIn, 200, an.OverlapOut),
    # jobs
    Op("POST", S + "/jobs", E, "Start a recompute", "jobs", an.JobIn, 202, an.JobOut),
    Op("GET", S + "/jobs", V, "Recent jobs", "jobs", None, 200, an.JobList),
    Op("GET", S + "/jobs/{job}", V, "A job's progress", "jobs", None, 200, an.JobOut),
    # triggers
    Op("POST", S + "/triggers", E, "Subscribe a URL to segment entries and exits",
       "triggers", an.TriggerIn, 201, an.TriggerOut, errors=(409,)),
    Op("GET", S + "/triggers", V, "The site's triggers", "triggers", None, 200, an.TriggerList),
    Op("GET", S + "/triggers/dead-letters", V, "Deliveries that failed every retry",
       "triggers", None, 200, an.DeadLetters, query=(
           Param("subscription", _STR),
           Param("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}))),
    Op("POST", S + "/triggers/dead-letters/redrive", E, "Deliver dead letters again",
       "triggers", an.RedriveIn, 200, an.Redriven, body_optional=True),
    Op("GET", S + "/triggers/{id}", V, "A trigger", "triggers", None, 200, an.TriggerOut),
    Op("PATCH", S + "/triggers/{id}", E, "Change a trigger", "triggers", an.TriggerPatch, 200,
       an.TriggerOut, errors=(409,)),
    Op("DELETE", S + "/triggers/{id}", E, "Delete a trigger", "triggers", None, 204, None),
    # results
    Op("GET", S + "/campaigns/{id}/results", V, "A campaign's results and lift",
       "campaigns", None, 200, an.Results),
    # what the admin page adds (segserver/http/console_routes.py, docs/admin.md)
    Op("GET", S + "/schema", V, "Attributes and segments a rule may use (auto-complete)",
       "admin page", None, 200, co.SchemaOut),
    Op("GET", S + "/sizes", V, "Every segment's size now and its size history", "admin page",
       None, 200, co.SizesOut,
       query=(Param("since", {"type": "number", "minimum": 0},
                    "epoch seconds (default: 30 days ago)"),
              Param("points", {"type": "integer", "minimum": 2, "maximum": 200},
                    "points per history, thinned evenly (default 30)"))),
    Op("POST", S + "/rules/check", V, "Check a rule and convert it between JSON and text",
       "admin page", co.RuleCheckIn, 200, co.RuleCheckOut, errors=(422,),
       description="Writes nothing. A rule that does not compile is 422 with its JSON path "
       "(rule.all[1].value: ...) or its text position (text[12]: ...)."),
    Op("GET", S + "/winners", V, "Which campaign wins for which segment", "admin page", None,
       200, co.WinnersOut,
       description="Counted on stored membership by audience and priority; caps, holdouts "
       "and exclusive groups across placements are decided per visitor when served."),
    Op("GET", S + "/visitors/{visitor}/explain", V,
       "A page view's segments and decisions now, and why (records nothing)", "admin page",
       None, 200, co.ExplainOut,
       query=(Param("placements", _STR, "placement ids, comma separated (default: all)"),)),
    Op("GET", S + "/visitors/{visitor}/history", V, "A visitor's membership history",
       "admin page", None, 200, co.HistoryOut),
    # operations
    Op("GET", "/healthz", OPEN, "The process is up", "operations", None, 200, None),
    Op("GET", "/readyz", OPEN, "Redis answers (all primaries, or some: partial), scripts loaded",
       "operations", None, 200, None, errors=(503,)),
    Op("GET", "/metrics", OPEN, "Prometheus metrics", "operations", None, 200, "text"),
    Op("GET", "/openapi.json", OPEN, "This document", "operations", None, 200, None),
]

_ITEMS: dict[str, tuple[str, type[BaseModel], type[BaseModel]]] = {
    "placement": ("placements", cat.PlacementIn, cat.PlacementPatch),
    "content": ("content", cat.ContentIn, cat.ContentPatch),
    "campaign": ("campaigns", cat.CampaignIn, cat.CampaignPatch),
}
for _kind, (_plural, _new, _patch) in _ITEMS.items():
    _base = f"{S}/{_plural}"
    OPS += [
        Op("GET", _base, V, f"Every {_kind}", "campaigns", None, 200, None),
        Op("POST", _base, E, f"Create a {_kind}", "campaigns", _new, 201, cat.ItemOut,
           errors=(409, 422)),
        Op("GET", _base + "/{id}", V, f"A {_kind}", "campaigns", None, 200, cat.ItemOut),
        Op("PUT", _base + "/{id}", E, f"Change a {_kind}", "campaigns", _patch, 200,
           cat.ItemOut, errors=(409, 422)),
        Op("PATCH", _base + "/{id}", E, f"Change a {_kind}", "campaigns", _patch, 200,
           cat.ItemOut, errors=(409, 422)),
        Op("DELETE", _base + "/{id}", E, f"Delete a {_kind} (409 naming referrers)",
           "campaigns", None, 204, None, errors=(409,)),
        Op("GET", _base + "/{id}/versions", V, f"A {_kind}'s versions", "campaigns", None,
           200, cat.Versions),
    ]

# fmt: on

#: (method, path template) → the operation; the admin middleware reads `access` here.
BY_ROUTE: dict[tuple[str, str], Op] = {(op.method, op.path): op for op in OPS}
