"""Placements, content and campaigns: validation and the versioned catalogue.

A campaign as the admin API takes it (DESIGN.md "Decisions"):

    {"id", "name", "placement", "status": draft|active|paused|archived, "priority",
     "audience": {"include": [...], "match": "any"|"all", "exclude": [...]},
     "schedule": {"start": ISO|null, "end": ISO|null},
     "variants": [{"id", "content", "weight"}], "holdout": 0-100, "group": str|null,
     "caps": [{"per": session|day|week|lifetime, "max": n}], "goals": [event types]}
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from segserver.errors import ConflictError, NotFoundError, ValidationError
from segserver.profile.events import parse_time
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.models import Records

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
PLACEMENT_KINDS = ("popup", "banner", "inline", "recommendations")
STRATEGIES = ("recently_viewed", "popular", "popular_in_segment")
CAMPAIGN_STATUSES = ("draft", "active", "paused", "archived")
CAP_PERIODS = ("session", "day", "week", "lifetime")
KINDS = ("placement", "content", "campaign")
_TEXT_MAX = 2000


def _slug(value: Any, path: str) -> str:
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise ValidationError(f"{path}: must be a slug: 1-64 of a-z 0-9 _ - (starting a-z0-9)")
    return value


def _text(value: Any, path: str, limit: int = _TEXT_MAX, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(f"{path}: must be a non-empty string of at most {limit} characters")
    return value


def _url(value: Any, path: str) -> str | None:
    text = _text(value, path)
    if text is not None and not re.match(r"^(https?://|/)", text):
        raise ValidationError(f"{path}: must be an http(s) URL or a path starting with /")
    return text


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(f"{path}: must be a whole number from {lo} to {hi}")
    return value


def _number(value: Any, path: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ValidationError(f"{path}: must be a number from {lo} to {hi}")
    return float(value)


def _only(body: Any, allowed: set[str], path: str = "body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError(f"{path}: must be an object")
    unknown = set(body) - allowed
    if unknown:
        prefix = "" if path == "body" else f"{path}."
        raise ValidationError(f"{prefix}{sorted(unknown)[0]}: unknown field")
    return body


def check_placement(body: Any) -> dict[str, Any]:
    body = _only(body, {"id", "name", "kind", "interruptive", "default_content", "version"})
    kind = body.get("kind")
    if kind not in PLACEMENT_KINDS:
        raise ValidationError(f"kind: must be one of {', '.join(PLACEMENT_KINDS)}")
    interruptive = body.get("interruptive", kind == "popup")
    if not isinstance(interruptive, bool):
        raise ValidationError("interruptive: must be true or false")
    default = body.get("default_content")
    return {
        "id": _slug(body.get("id"), "id"),
        "name": _text(body.get("name"), "name") or "",
        "kind": kind,
        "interruptive": interruptive,
        "default_content": None if default is None else _slug(default, "default_content"),
    }


def check_content(body: Any) -> dict[str, Any]:
    body = _only(body, {"id", "name", "kind", "payload", "version"})
    kind = body.get("kind")
    if kind not in PLACEMENT_KINDS:
        raise ValidationError(f"kind: must be one of {', '.join(PLACEMENT_KINDS)}")
    p = _only(body.get("payload"), {"title", "body", "image", "cta", "link", "strategy",
                                    "limit", "segment"}, "payload")  # fmt: skip
    payload: dict[str, Any]
    if kind == "recommendations":
        if p.get("strategy") not in STRATEGIES:
            raise ValidationError(f"payload.strategy: must be one of {', '.join(STRATEGIES)}")
        payload = {"strategy": p["strategy"],
                   "limit": _int(p.get("limit", 8), "payload.limit", 1, 50)}  # fmt: skip
        if p["strategy"] == "popular_in_segment":
            payload["segment"] = _slug(p.get("segment"), "payload.segment")
        if p.get("title") is not None:
            payload["title"] = _text(p["title"], "payload.title", 200)
    else:
        payload = {
            "title": _text(p.get("title"), "payload.title", 200, required=kind == "popup"),
            "body": _text(p.get("body"), "payload.body", required=kind == "popup"),
            "image": _url(p.get("image"), "payload.image"),
            "cta": _text(p.get("cta"), "payload.cta", 100),
            "link": _url(p.get("link"), "payload.link"),
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        if not payload:
            raise ValidationError("payload: needs at least a title or a body")
    return {
        "id": _slug(body.get("id"), "id"),
        "name": _text(body.get("name"), "name") or "",
        "kind": kind,
        "payload": payload,
    }


def check_campaign(body: Any) -> dict[str, Any]:
    body = _only(body, {"id", "name", "placement", "status", "priority", "audience", "schedule",
                        "variants", "holdout", "group", "caps", "goals", "version"})  # fmt: skip
    status = body.get("status", "draft")
    if status not in CAMPAIGN_STATUSES:
        raise ValidationError(f"status: must be one of {', '.join(CAMPAIGN_STATUSES)}")
    aud = _only(body.get("audience", {}), {"include", "match", "exclude"}, "audience")
    include = [_slug(s, f"audience.include[{i}]") for i, s in enumerate(_list(aud, "include"))]
    exclude = [_slug(s, f"audience.exclude[{i}]") for i, s in enumerate(_list(aud, "exclude"))]
    match = aud.get("match", "any")
    if match not in ("any", "all"):
        raise ValidationError('audience.match: must be "any" or "all"')
    sched = _only(body.get("schedule") or {}, {"start", "end"}, "schedule")
    start = None if sched.get("start") is None else parse_time(sched["start"], "schedule.start")
    end = None if sched.get("end") is None else parse_time(sched["end"], "schedule.end")
    if start is not None and end is not None and end <= start:
        raise ValidationError("schedule.end: must be after schedule.start")
    raw_variants = body.get("variants")
    if not isinstance(raw_variants, list) or not 1 <= len(raw_variants) <= 20:
        raise ValidationError("variants: must be a list of 1-20 variants")
    variants: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw_v in enumerate(raw_variants):
        v = _only(raw_v, {"id", "content", "weight"}, f"variants[{i}]")
        vid = _slug(v.get("id"), f"variants[{i}].id")
        if vid in seen:
            raise ValidationError(f"variants[{i}].id: {vid!r} appears twice")
        seen.add(vid)
        variants.append(
            {
                "id": vid,
                "content": _slug(v.get("content"), f"variants[{i}].content"),
                "weight": _number(v.get("weight", 1), f"variants[{i}].weight", 0, 1e6),
            }
        )
    if sum(v["weight"] for v in variants) <= 0:
        raise ValidationError("variants: at least one weight must be positive")
    caps = []
    for i, raw_c in enumerate(_list(body, "caps")):
        c = _only(raw_c, {"per", "max"}, f"caps[{i}]")
        if c.get("per") not in CAP_PERIODS:
            raise ValidationError(f"caps[{i}].per: must be one of {', '.join(CAP_PERIODS)}")
        caps.append({"per": c["per"], "max": _int(c.get("max"), f"caps[{i}].max", 1, 1_000_000)})
    group = body.get("group")
    return {
        "id": _slug(body.get("id"), "id"), "name": _text(body.get("name"), "name") or "",
        "placement": _slug(body.get("placement"), "placement"), "status": status,
        "priority": _int(body.get("priority", 0), "priority", -1_000_000, 1_000_000),
        "audience": {"include": include, "match": match, "exclude": exclude},
        "schedule": {"start": start, "end": end}, "variants": variants,
        "holdout": _number(body.get("holdout", 0), "holdout", 0, 100),
        "group": None if group is None else _slug(group, "group"), "caps": caps,
        "goals": [_slug(g, f"goals[{i}]") for i, g in enumerate(_list(body, "goals"))],
    }  # fmt: skip


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise ValidationError(f"{name}: must be a list")
    return value


CHECKS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "placement": check_placement, "content": check_content, "campaign": check_campaign,
}  # fmt: skip


def goal_index(campaigns: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """event type → campaigns that have it as a goal (every stored campaign: a paused one
    still converts the visitors it exposed)."""
    index: dict[str, list[str]] = {}
    for cid in sorted(campaigns):
        for goal in campaigns[cid].get("goals", ()):
            index.setdefault(goal, []).append(cid)
    return index


class ItemService:
    """Create, read, change and delete catalogue items of one kind, versioned: an
    update names the version it edits (stale → 409); previous versions are kept."""

    def __init__(self, records: Records, store: CatalogueStore, kind: str) -> None:
        self.records, self.store, self.kind = records, store, kind
        self.check = CHECKS[kind]

    def _json(self, rec: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(rec["data"])
        return {**data, "version": rec["version"], "created_at": rec["created_at"],
                "updated_at": rec["updated_at"]}  # fmt: skip

    async def get(self, site: str, item: str) -> dict[str, Any]:
        rec = await self.records.get(self.kind, item, site)
        if rec is None:
            raise NotFoundError(f"{self.kind} {item!r} does not exist")
        return self._json(rec)

    async def all(self, site: str) -> list[dict[str, Any]]:
        out = []
        for item in await self.store.ids(site, self.kind):
            try:
                out.append(await self.get(site, item))
            except NotFoundError:
                continue
        return out

    async def create(self, site: str, body: Any) -> dict[str, Any]:
        data = self.check(body)
        now = time.time()
        rec = {"id": data["id"], "data": orjson.dumps(data).decode(), "created_at": now,
               "updated_at": now, "version": 1}  # fmt: skip
        await self.store.write(site, self.kind, data["id"], expect=None,
                               fields=self.records.fields(self.kind, rec, site))  # fmt: skip
        return self._json(rec)

    async def update(self, site: str, item: str, body: Any) -> dict[str, Any]:
        old = await self.get(site, item)
        if not isinstance(body, dict) or not isinstance(body.get("version"), int):
            raise ValidationError("version: required, the version you edited (an integer)")
        if body["version"] != old["version"]:
            raise ConflictError(
                f"version: {self.kind} {item!r} is at version {old['version']}, "
                f"you edited {body['version']}", code="stale_version")  # fmt: skip
        merged = {k: v for k, v in old.items() if k not in ("version", "created_at",
                                                            "updated_at")}  # fmt: skip
        merged.update({k: v for k, v in body.items() if k != "version"})
        if merged.get("id") != item:
            raise ValidationError("id: cannot be changed")
        data = self.check(merged)
        rec = {"id": item, "data": orjson.dumps(data).decode(), "created_at": old["created_at"],
               "updated_at": time.time(), "version": old["version"] + 1}  # fmt: skip
        await self.store.write(site, self.kind, item, expect=old["version"],
                               fields=self.records.fields(self.kind, rec, site),
                               previous=old)  # fmt: skip
        return self._json(rec)

    async def delete(self, site: str, item: str) -> None:
        old = await self.get(site, item)
        await self.store.write(site, self.kind, item, expect=old["version"], fields=None)

    async def versions(self, site: str, item: str) -> list[dict[str, Any]]:
        return [await self.get(site, item), *await self.store.versions(site, self.kind, item)]


def check_policy(value: Any) -> dict[str, Any]:
    """The site-wide decision policy (site option "policy")."""
    p = _only(value or {}, {"interruptive_per_session", "interruptive_per_day", "holdout"},
              "options.policy")  # fmt: skip
    out: dict[str, Any] = {"holdout": _number(p.get("holdout", 0), "options.policy.holdout", 0,
                                              100)}  # fmt: skip
    for name in ("interruptive_per_session", "interruptive_per_day"):
        if p.get(name) is not None:
            out[name] = _int(p[name], f"options.policy.{name}", 0, 1_000_000)
    return out
