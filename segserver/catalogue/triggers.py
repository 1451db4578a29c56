"""Trigger subscriptions: a site subscribes a URL to segment entries and exits.

A subscription has an id (`tr_<16 hex>`), a URL (http or https), the segments it
follows (empty: every segment), the changes it wants (entered, exited or both), a
signing secret (returned once, when created), an active flag and timestamps. Stored
as a catalogue record (storage.models) under the site's hash tag, read by primary key
only; the site's ids are kept in a set (storage.changes), never found by scanning.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from segserver.errors import ConflictError, NotFoundError, ValidationError
from segserver.storage.changes import ChangeStore
from segserver.storage.models import Records
from segserver.trust import netpolicy

CHANGES = ("entered", "exited", "both")
_SEGMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ID_RE = re.compile(r"^tr_[0-9a-f]{16}$")
_URL_MAX = 2048
_SEGMENTS_MAX = 100
#: Subscriptions per site: each change is posted once per matching one.
SUBSCRIPTIONS_MAX = 100
_FIELDS = {"url", "segments", "changes", "active"}


def _ref(site: str, sub_id: str) -> str:
    return f"{{{site}}}:{sub_id}"


@dataclass(frozen=True)
class Subscription:
    id: str
    site: str
    url: str
    segments: tuple[str, ...]
    changes: str
    secret: str
    active: bool
    created_at: float
    updated_at: float
    version: int

    def wants(self, segment: str, change: str) -> bool:
        """Is a change of `segment` (`entered` or `exited`) delivered to this URL?"""
        return (
            self.active
            and (not self.segments or segment in self.segments)
            and self.changes in (change, "both")
        )

    def to_json(self, with_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "site": self.site,
            "url": self.url,
            "segments": list(self.segments),
            "changes": self.changes,
            "active": self.active,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }
        if with_secret:
            out["secret"] = self.secret
        return out


def check_url(value: Any, networks: Sequence[str] = ()) -> str:
    """An http(s) URL that does not name this machine or an internal address (unless in
    the site's allow-listed `networks`); names are checked again when connecting."""
    parts = urlsplit(value) if isinstance(value, str) and len(value) <= _URL_MAX else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"url: must be an http:// or https:// URL of at most {_URL_MAX}")
    why = netpolicy.refused_host(parts.hostname, netpolicy.networks(networks))
    if why is not None:
        raise ValidationError(f"url: {why}; a site may allow-list internal networks in its "
                              "options.webhook_networks", code="internal_address")  # fmt: skip
    if parts.fragment:
        raise ValidationError("url: must not have a #fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValidationError("url: malformed port") from None
    return str(value)


def check_segments(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _SEGMENTS_MAX:
        raise ValidationError(
            f"segments: must be a list of at most {_SEGMENTS_MAX} segment ids (empty: all)"
        )
    for i, seg in enumerate(value):
        if not isinstance(seg, str) or not _SEGMENT_RE.fullmatch(seg):
            raise ValidationError(f"segments[{i}]: {seg!r} is not a segment id")
    return tuple(dict.fromkeys(value))


def check_changes(value: Any) -> str:
    if value not in CHANGES:
        raise ValidationError(f"changes: must be one of {', '.join(CHANGES)}")
    return str(value)


def check_active(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("active: must be true or false")
    return value


def _check_body(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("body: must be an object")
    unknown = set(body) - allowed
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
    return body


class TriggerService:
    """Create, read, change and delete a site's subscriptions."""

    def __init__(self, records: Records, store: ChangeStore) -> None:
        self.records = records
        self.store = store

    def _from_record(self, rec: dict[str, Any]) -> Subscription:
        return Subscription(
            rec["id"],
            rec["site"],
            rec["url"],
            tuple(orjson.loads(rec["segments"])),
            rec["changes"],
            rec["secret"],
            bool(rec["active"]),
            rec["created_at"],
            rec["updated_at"],
            rec["version"],
        )

    async def create(self, site: str, body: Any, now: float,
                     networks: Sequence[str] = ()) -> Subscription:  # fmt: skip
        """A new subscription; its `secret` is in the answer and never shown again.
        `networks`: internal networks the site allow-lists (options.webhook_networks)."""
        body = _check_body(body, _FIELDS)
        if "url" not in body:
            raise ValidationError("url: required")
        url = check_url(body["url"], networks)
        segments = check_segments(body.get("segments", []))
        changes = check_changes(body.get("changes", "both"))
        active = check_active(body.get("active", True))
        if len(await self.store.subscription_ids(site)) >= SUBSCRIPTIONS_MAX:
            raise ConflictError(
                f"site {site!r} already has {SUBSCRIPTIONS_MAX} triggers", code="too_many_triggers"
            )
        sub_id = f"tr_{secrets.token_hex(8)}"
        rec = {
            "ref": _ref(site, sub_id),
            "id": sub_id,
            "site": site,
            "url": url,
            "segments": orjson.dumps(list(segments)).decode(),
            "changes": changes,
            "secret": f"whsec_{secrets.token_hex(24)}",
            "active": active,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        await self.records.save("trigger", rec)
        first = await self.store.add_subscription(site, sub_id)
        await self.store.start_groups(site, skip_backlog=first)
        return self._from_record(rec)

    async def _record(self, site: str, sub_id: str) -> dict[str, Any]:
        rec = None
        if isinstance(sub_id, str) and _ID_RE.fullmatch(sub_id):
            rec = await self.records.get("trigger", _ref(site, sub_id))
        if rec is None:
            raise NotFoundError(f"trigger {sub_id!r} does not exist on site {site!r}")
        return rec

    async def get(self, site: str, sub_id: str) -> Subscription:
        return self._from_record(await self._record(site, sub_id))

    async def list_all(self, site: str) -> list[Subscription]:
        out = []
        for sub_id in await self.store.subscription_ids(site):
            rec = await self.records.get("trigger", _ref(site, sub_id))
            if rec is not None:  # None: deleted between the two reads
                out.append(self._from_record(rec))
        return out

    async def update(self, site: str, sub_id: str, body: Any, now: float,
                     networks: Sequence[str] = ()) -> Subscription:  # fmt: skip
        """Change url, segments, changes or active (PATCH; `version` guards it)."""
        body = _check_body(body, _FIELDS | {"version"})
        rec = await self._record(site, sub_id)
        if "version" in body and body["version"] != rec["version"]:
            raise ConflictError(
                f"version: the trigger changed (now version {rec['version']})",
                code="stale_version",
            )
        if "url" in body:
            rec["url"] = check_url(body["url"], networks)
        if "segments" in body:
            rec["segments"] = orjson.dumps(list(check_segments(body["segments"]))).decode()
        if "changes" in body:
            rec["changes"] = check_changes(body["changes"])
        if "active" in body:
            rec["active"] = check_active(body["active"])
        rec["updated_at"] = now
        rec["version"] += 1
        await self.records.save("trigger", rec)
        return self._from_record(rec)

    async def listing(self, site: str) -> dict[str, Any]:
        """Every subscription with its delivery counters, and the site's deliveries
        waiting for a retry now (the admin API's list)."""
        counted = await self.store.outcomes(site)
        empty = {"delivered": 0, "failed": 0, "last_at": None, "last": None}
        subs = await self.list_all(site)
        return {
            "triggers": [{**s.to_json(), "deliveries": counted.get(s.id, empty)} for s in subs],
            "retrying": await self.store.retries(site),
        }

    async def delete(self, site: str, sub_id: str) -> None:
        await self._record(site, sub_id)
        await self.records.delete("trigger", _ref(site, sub_id))
        await self.store.remove_subscription(site, sub_id)
        await self.store.forget_outcomes(site, sub_id)
