"""Sites (tenants): id, name, public site key, secret server key, allowed origins,
profile schema, options.

A site key is `sk_<site id>_<32 hex>`: the public API finds the site from the key
without an index key, then compares the whole key in constant time. The server key
(`srv_<site id>_<64 hex>`, segserver.trust.auth) is shown once, when made, and stored as its
SHA-256.

Options the server reads (others are kept as given): `policy` (decisions, see
catalogue.campaigns.check_policy), `explain_public` (bool), `webhook_networks`
(CIDRs that webhooks of this site may reach although private, e.g. "10.0.0.0/8").
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from segserver.catalogue.campaigns import check_policy
from segserver.errors import ConflictError, NotFoundError, ValidationError
from segserver.profile.identity import check_site_id
from segserver.profile.schema import Schema
from segserver.storage.models import Records
from segserver.trust import auth

_KEY_RE = re.compile(r"^sk_([a-z0-9][a-z0-9-]{0,62})_[0-9a-f]{32}$")
_NAME_MAX = 200
_ORIGINS_MAX = 100


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    site_key: str
    origins: tuple[str, ...]
    schema: Schema
    created_at: float
    updated_at: float
    version: int
    options: dict[str, Any] = field(default_factory=dict)
    server_key_hash: str = field(default="", repr=False)
    #: the server key in clear: only on the Site a creation or rotation returns
    server_key: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "name": self.name,
            "site_key": self.site_key,
            "origins": list(self.origins),
            "schema": self.schema.to_json(),
            "options": self.options,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "has_server_key": bool(self.server_key_hash),
        }
        if self.server_key is not None:
            out["server_key"] = self.server_key
        return out

    def is_server_key(self, key: str) -> bool:
        """Is `key` this site's server key (constant time)?"""
        return bool(self.server_key_hash) and auth.same(auth.digest(key), self.server_key_hash)

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


def new_site_key(site_id: str) -> str:
    return f"sk_{site_id}_{secrets.token_hex(16)}"


def site_id_of_key(site_key: str) -> str | None:
    match = _KEY_RE.fullmatch(site_key)
    return match.group(1) if match else None


def check_origins(value: Any, path: str = "origins") -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _ORIGINS_MAX:
        raise ValidationError(f"{path}: must be a list of at most {_ORIGINS_MAX} origins")
    out = []
    for i, origin in enumerate(value):
        if origin == "*":
            out.append(origin)
            continue
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
        ):
            raise ValidationError(
                f"{path}[{i}]: {origin!r} is not an origin like https://shop.example or '*'"
            )
        out.append(origin)
    return tuple(out)


def check_options(value: Any) -> dict[str, Any]:
    """A site's options: an object; the ones the server reads are checked."""
    if not isinstance(value, dict):
        raise ValidationError("options: must be an object")
    if "explain_public" in value and not isinstance(value["explain_public"], bool):
        raise ValidationError("options.explain_public: must be true or false")
    nets = value.get("webhook_networks")
    if nets is not None:
        if not isinstance(nets, list) or len(nets) > _ORIGINS_MAX:
            raise ValidationError(f"options.webhook_networks: must be a list of at most "
                                  f"{_ORIGINS_MAX} networks (CIDR)")  # fmt: skip
        for i, net in enumerate(nets):
            try:
                ipaddress.ip_network(net if isinstance(net, str) else "!", strict=False)
            except ValueError:
                raise ValidationError(f"options.webhook_networks[{i}]: {net!r} is not a "
                                      "network like 10.0.0.0/8 or fd00::/8") from None  # fmt: skip
    if "policy" in value:
        check_policy(value["policy"])
    return value


def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= _NAME_MAX:
        raise ValidationError(f"name: must be 1-{_NAME_MAX} characters")
    return value.strip()


class SiteService:
    """Create, read and change sites (records in storage.models)."""

    def __init__(self, records: Records, tag_slots: int) -> None:
        self.records = records
        self.tag_slots = tag_slots

    def _from_record(self, rec: dict[str, Any]) -> Site:
        schema = Schema.from_json(orjson.loads(rec["profile_schema"]), tag_slots=self.tag_slots)
        return Site(
            rec["id"],
            rec["name"],
            rec["site_key"],
            tuple(orjson.loads(rec["origins"])),
            schema,
            rec["created_at"],
            rec["updated_at"],
            rec["version"],
            orjson.loads(rec["options"]),
            rec.get("server_key_hash") or "",
        )

    async def create(self, body: Any) -> Site:
        if not isinstance(body, dict):
            raise ValidationError("body: must be an object")
        unknown = set(body) - {"id", "name", "origins", "schema", "options", "prebuilt"}
        if unknown:
            raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
        site_id = check_site_id(body.get("id"))
        name = _check_name(body.get("name", site_id))
        origins = check_origins(body.get("origins", []))
        schema = Schema.from_json(body.get("schema"), tag_slots=self.tag_slots)
        options = check_options(body.get("options", {}))
        if "prebuilt" in body and not isinstance(body["prebuilt"], bool):
            raise ValidationError("prebuilt: must be true or false")
        now = time.time()
        server_key = auth.new_server_key(site_id)
        rec = {
            "id": site_id,
            "name": name,
            "site_key": new_site_key(site_id),
            "server_key_hash": auth.digest(server_key),
            "origins": orjson.dumps(list(origins)).decode(),
            "profile_schema": orjson.dumps(schema.to_json()).decode(),
            "options": orjson.dumps(options).decode(),
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        if not await self.records.save("site", rec, new=True):
            raise ConflictError(f"id: site {site_id!r} already exists", code="site_exists")
        await self.records.add_site_id(site_id)
        return replace(self._from_record(rec), server_key=server_key)

    async def _record(self, site_id: str) -> dict[str, Any]:
        rec = await self.records.get("site", site_id)
        if rec is None:
            raise NotFoundError(f"site {site_id!r} does not exist")
        return rec

    async def get(self, site_id: str) -> Site:
        return self._from_record(await self._record(site_id))

    async def update(self, site_id: str, body: Any) -> Site:
        """Change name, origins, options, or append to the schema (PATCH semantics)."""
        if not isinstance(body, dict):
            raise ValidationError("body: must be an object")
        unknown = set(body) - {"name", "origins", "schema", "options", "version"}
        if unknown:
            raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
        rec = await self._record(site_id)
        if "version" in body and body["version"] != rec["version"]:
            raise ConflictError(
                f"version: the site changed (now version {rec['version']})", code="stale_version"
            )
        if "name" in body:
            rec["name"] = _check_name(body["name"])
        if "origins" in body:
            rec["origins"] = orjson.dumps(list(check_origins(body["origins"]))).decode()
        if "options" in body:
            rec["options"] = orjson.dumps(check_options(body["options"])).decode()
        if "schema" in body:
            new = Schema.from_json(body["schema"], tag_slots=self.tag_slots)
            old = Schema.from_json(orjson.loads(rec["profile_schema"]), tag_slots=self.tag_slots)
            new.check_extends(old)
            rec["profile_schema"] = orjson.dumps(new.to_json()).decode()
        rec["updated_at"] = time.time()
        rec["version"] += 1
        await self.records.save("site", rec)
        return self._from_record(rec)

    async def rotate_key(self, site_id: str) -> Site:
        rec = await self._record(site_id)
        rec["site_key"] = new_site_key(site_id)
        rec["updated_at"] = time.time()
        rec["version"] += 1
        await self.records.save("site", rec)
        return self._from_record(rec)

    async def rotate_server_key(self, site_id: str) -> Site:
        """A new server key (the old one stops working); the answer holds it once."""
        rec = await self._record(site_id)
        server_key = auth.new_server_key(site_id)
        rec["server_key_hash"] = auth.digest(server_key)
        rec["updated_at"] = time.time()
        rec["version"] += 1
        await self.records.save("site", rec)
        return replace(self._from_record(rec), server_key=server_key)

    async def list_ids(self) -> list[str]:
        return await self.records.site_ids()
