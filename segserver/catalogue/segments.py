"""Segments: the catalogue (redis-om), validation against the engine, versions.

Only active dynamic segments are evaluated; drafts can be previewed; archived ones
are kept but never recalculated; static ones hold an uploaded or frozen member list.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from segserver.dsl.prebuilt import load_prebuilt
from segserver.engine import SegmentDef, build_program, compile_rule
from segserver.errors import ConflictError, NotFoundError, RuleError, ValidationError
from segserver.profile.schema import Layout
from segserver.profile.vocabulary import Vocabulary
from segserver.storage.catalogue import CatalogueStore
from segserver.storage.models import Records

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
TYPES = ("dynamic", "static")
STATUSES = ("draft", "active", "archived")
SORTS = ("id", "name", "priority", "created_at", "updated_at", "status")
RESERVED_IDS = frozenset({"preview", "query", "overlap"})
_FIELDS = {"id", "name", "description", "tags", "type", "status", "priority", "rule", "salt"}


@dataclass(frozen=True)
class Segment:
    id: str
    name: str
    description: str
    tags: tuple[str, ...]
    type: str
    status: str
    priority: int
    rule: dict[str, Any]
    slot: int
    salt: str
    prebuilt: bool
    created_at: float
    updated_at: float
    version: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        return self.status == "active" and self.type == "dynamic"

    def definition(self) -> SegmentDef:
        return SegmentDef(self.id, self.rule, self.priority, self.salt or None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "description": self.description,
            "tags": list(self.tags), "type": self.type, "status": self.status,
            "priority": self.priority, "rule": self.rule, "salt": self.salt,
            "prebuilt": self.prebuilt, "created_at": self.created_at,
            "updated_at": self.updated_at, "version": self.version,
        }  # fmt: skip


def _from_record(rec: dict[str, Any]) -> Segment:
    return Segment(
        rec["id"], rec["name"], rec["description"], tuple(orjson.loads(rec["tags"])), rec["type"],
        rec["status"], rec["priority"], orjson.loads(rec["rule"]), rec["slot"], rec["salt"],
        bool(rec["prebuilt"]), rec["created_at"], rec["updated_at"], rec["version"],
    )  # fmt: skip


def check_fields(body: Any, *, creating: bool) -> dict[str, Any]:
    """Validate the shape of a segment body (not the rule's meaning); name the field."""
    if not isinstance(body, dict):
        raise ValidationError("body: must be an object")
    unknown = set(body) - _FIELDS - {"version"}
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
    out: dict[str, Any] = {}
    if creating:
        sid = body.get("id")
        if not isinstance(sid, str) or not SLUG.fullmatch(sid):
            raise ValidationError("id: must be a slug: 1-64 of a-z 0-9 _ - (starting a-z0-9)")
        if sid in RESERVED_IDS:
            raise ValidationError(f"id: {sid!r} names an operation (POST .../segments/{sid})")
        out["id"] = sid
    if "name" in body or creating:
        name = body.get("name", out.get("id"))
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            raise ValidationError("name: must be 1-200 characters")
        out["name"] = name.strip()
    if "description" in body:
        if not isinstance(body["description"], str) or len(body["description"]) > 2000:
            raise ValidationError("description: must be a string of at most 2000 characters")
        out["description"] = body["description"]
    if "tags" in body:
        tags = body["tags"]
        if not isinstance(tags, list) or not all(
            isinstance(t, str) and 1 <= len(t) <= 64 for t in tags
        ):
            raise ValidationError("tags: must be a list of strings (1-64 characters)")
        out["tags"] = sorted(set(tags))
    for name, allowed in (("type", TYPES), ("status", STATUSES)):
        if name in body:
            if body[name] not in allowed:
                raise ValidationError(f"{name}: must be one of {', '.join(allowed)}")
            out[name] = body[name]
    if "priority" in body:
        p = body["priority"]
        if isinstance(p, bool) or not isinstance(p, int) or not -1_000_000 <= p <= 1_000_000:
            raise ValidationError("priority: must be a whole number")
        out["priority"] = p
    if "salt" in body:
        if not isinstance(body["salt"], str) or len(body["salt"]) > 64:
            raise ValidationError("salt: must be a string of at most 64 characters")
        out["salt"] = body["salt"]
    if "rule" in body:
        if not isinstance(body["rule"], dict):
            raise RuleError("rule: must be an object")
        out["rule"] = body["rule"]
    return out


class SegmentService:
    def __init__(self, records: Records, store: CatalogueStore) -> None:
        self.records = records
        self.store = store

    async def get(self, site: str, sid: str) -> Segment:
        rec = await self.records.get("segment", sid, site)
        if rec is None:
            raise NotFoundError(f"segment {sid!r} does not exist")
        return _from_record(rec)

    async def all(self, site: str) -> list[Segment]:
        out = []
        for sid in await self.store.ids(site, "segment"):
            try:
                out.append(await self.get(site, sid))
            except NotFoundError:
                continue  # deleted between the two reads
        return out

    def validate(
        self, seg: Segment, others: list[Segment], layout: Layout, vocab: Vocabulary
    ) -> None:
        """RuleError (422) unless `seg` compiles, and the active set with it still does."""
        if seg.type == "static":
            return
        known = [o.id for o in others if o.id != seg.id and o.status != "archived"]
        compile_rule(seg.rule, layout, vocab, known, segment_id=seg.id)
        if seg.status == "active":
            active = [o.definition() for o in others if o.evaluated and o.id != seg.id]
            try:
                build_program([*active, seg.definition()], layout, vocab)
            except RuleError as exc:
                raise RuleError(f"{exc.message}", details=exc.details) from None

    async def create(
        self, site: str, body: Any, layout: Layout, vocab: Vocabulary, *, prebuilt: bool = False
    ) -> Segment:
        fields = check_fields(body, creating=True)
        fields.setdefault("type", "dynamic")
        fields.setdefault("status", "draft")
        if fields["type"] == "dynamic" and "rule" not in fields:
            raise RuleError("rule: a dynamic segment needs a rule")
        others = await self.all(site)
        if any(o.id == fields["id"] for o in others):
            raise ConflictError(f"id: segment {fields['id']!r} already exists", code="exists")
        now = time.time()
        seg = Segment(
            fields["id"], fields["name"], fields.get("description", ""),
            tuple(fields.get("tags", ())), fields["type"], fields["status"],
            fields.get("priority", 0), fields.get("rule", {}), -1, fields.get("salt", ""),
            prebuilt, now, now, 1,
        )  # fmt: skip
        self.validate(seg, others, layout, vocab)  # before anything is written (the slot)
        seg = replace(seg, slot=await self.store.next_slot(site, "segment"))
        await self._save(site, seg, expect=None, previous=None)
        return seg

    async def update(
        self, site: str, sid: str, body: Any, layout: Layout, vocab: Vocabulary
    ) -> Segment:
        """Change a segment; `version` (the one the editor saw) is required: a stale
        one is a 409, never a silent overwrite."""
        fields = check_fields(body, creating=False)
        expect = body.get("version") if isinstance(body, dict) else None
        if isinstance(expect, bool) or not isinstance(expect, int):
            raise ValidationError("version: required, the version you edited (an integer)")
        old = await self.get(site, sid)
        if old.version != expect:
            raise ConflictError(
                f"version: segment {sid!r} is at version {old.version}, you edited {expect}",
                code="stale_version",
            )
        others = await self.all(site)
        new = Segment(
            old.id, fields.get("name", old.name), fields.get("description", old.description),
            tuple(fields.get("tags", old.tags)), fields.get("type", old.type),
            fields.get("status", old.status), fields.get("priority", old.priority),
            fields.get("rule", old.rule), old.slot, fields.get("salt", old.salt), old.prebuilt,
            old.created_at, time.time(), old.version + 1,
        )  # fmt: skip
        if new.type == "dynamic" and not new.rule:
            raise RuleError("rule: a dynamic segment needs a rule")
        if new.status != "active" and old.status == "active":
            users = [o.id for o in others if o.evaluated and o.id != sid and _refers(o, sid)]
            if users:
                raise ConflictError(
                    f"status: active segments {', '.join(users)} refer to {sid!r}",
                    code="segment_in_use",
                )
        self.validate(new, others, layout, vocab)
        await self._save(site, new, expect=old.version, previous=old.to_json())
        return new

    async def delete(self, site: str, sid: str) -> Segment:
        old = await self.get(site, sid)
        users = [o.id for o in await self.all(site) if o.id != sid and _refers(o, sid)]
        if users:
            raise ConflictError(
                f"segments {', '.join(users)} refer to {sid!r}", code="segment_in_use"
            )
        await self.store.write(site, "segment", sid, expect=old.version, fields=None)
        return old

    async def install_prebuilt(self, site: str, layout: Layout, vocab: Vocabulary) -> list[str]:
        """Create the prebuilt segments (config/segments/) as active segments of a new
        site, referenced ones first; they are ordinary, editable segments afterwards."""
        pending = {p.id: p for p in load_prebuilt(layout=layout)}
        done: list[str] = []
        while pending:
            ready = [p for p in pending.values() if rule_refs(p.rule) <= set(done)]
            if not ready:
                raise RuleError(f"prebuilt segments refer in a cycle: {sorted(pending)}")
            for p in sorted(ready, key=lambda p: p.id):
                await self.create(site, {**p.to_json(), "status": "active"}, layout, vocab,
                                  prebuilt=True)  # fmt: skip
                done.append(p.id)
                del pending[p.id]
        return done

    async def versions(self, site: str, sid: str) -> list[dict[str, Any]]:
        current = await self.get(site, sid)
        return [current.to_json(), *await self.store.versions(site, "segment", sid)]

    async def _save(
        self, site: str, seg: Segment, *, expect: int | None, previous: dict[str, Any] | None
    ) -> None:
        fields = self.records.fields("segment", {
            "id": seg.id, "name": seg.name, "description": seg.description,
            "tags": orjson.dumps(list(seg.tags)).decode(), "type": seg.type,
            "status": seg.status, "priority": seg.priority,
            "rule": orjson.dumps(seg.rule).decode(), "slot": seg.slot, "salt": seg.salt,
            "prebuilt": int(seg.prebuilt), "created_at": seg.created_at,
            "updated_at": seg.updated_at, "version": seg.version,
        }, site)  # fmt: skip
        await self.store.write(site, "segment", seg.id, expect=expect, fields=fields,
                               previous=previous)  # fmt: skip


def _refers(seg: Segment, target: str) -> bool:
    return target in rule_refs(seg.rule)


def rule_refs(rule: Any) -> set[str]:
    """Ids of every segment a rule (JSON) refers to with `{"segment": id}`."""
    found: set[str] = set()
    if isinstance(rule, dict):
        if isinstance(rule.get("segment"), str):
            found.add(rule["segment"])
        for value in rule.values():
            found |= rule_refs(value)
    elif isinstance(rule, list):
        for item in rule:
            found |= rule_refs(item)
    return found


def list_segments(
    segments: list[Segment],
    *,
    q: str | None = None,
    status: str | None = None,
    type_: str | None = None,
    tag: str | None = None,
    sort: str = "id",
    page: int = 1,
    per_page: int = 50,
) -> tuple[list[Segment], int]:
    """Filter (case-insensitive search over name and description), sort, page."""  # fmt: skip
    found = segments
    if q:
        needle = q.casefold()
        found = [s for s in found if needle in s.name.casefold()
                 or needle in s.description.casefold()]  # fmt: skip
    if status:
        found = [s for s in found if s.status == status]
    if type_:
        found = [s for s in found if s.type == type_]
    if tag:
        found = [s for s in found if tag in s.tags]
    desc = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORTS:
        raise ValidationError(f"sort: must be one of {', '.join(SORTS)} (prefix - to reverse)")
    found = sorted(found, key=lambda s: (getattr(s, key), s.id), reverse=desc)
    total = len(found)
    start = (page - 1) * per_page
    return found[start : start + per_page], total
