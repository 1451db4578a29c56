"""Per-site admin tokens with roles: create (the token is shown once), list, revoke,
and verify a bearer token (root from the settings, or a site's)."""

from __future__ import annotations

import time
from typing import Any

from segserver.errors import NotFoundError, ValidationError
from segserver.storage.tokens import TokenStore
from segserver.trust import auth
from segserver.trust.auth import Principal, Role

NAME_MAX = 200
TOKENS_MAX = 100  # per site


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "hash"}


class AdminTokens:
    def __init__(self, store: TokenStore, root_token: str) -> None:
        self.store = store
        self.root_token = root_token

    async def create(self, site: str, body: Any) -> dict[str, Any]:
        """`{name, role: viewer|editor|admin}` → the record with `token` (shown once)."""
        if not isinstance(body, dict):
            raise ValidationError("body: must be an object")
        unknown = set(body) - {"name", "role"}
        if unknown:
            raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX:
            raise ValidationError(f"name: must be 1-{NAME_MAX} characters")
        roles = {r.label: r for r in auth.SITE_ROLES}
        if body.get("role") not in roles:
            raise ValidationError(f"role: must be one of {', '.join(roles)}")
        if len(await self.store.all(site)) >= TOKENS_MAX:
            raise ValidationError(f"tokens: a site has at most {TOKENS_MAX} admin tokens",
                                  code="too_many_tokens")  # fmt: skip
        token_id, token = auth.new_admin_token(site)
        record = {"id": token_id, "name": name.strip(), "role": body["role"], "site": site,
                  "hash": auth.digest(token), "created_at": time.time()}  # fmt: skip
        await self.store.add(site, token_id, record)
        return {**_public(record), "token": token}

    async def list(self, site: str) -> list[dict[str, Any]]:
        return [_public(r) for r in await self.store.all(site)]

    async def revoke(self, site: str, token_id: str) -> None:
        if not await self.store.remove(site, token_id):
            raise NotFoundError(f"admin token {token_id!r} does not exist on site {site!r}")

    async def verify(self, token: str) -> Principal | None:
        """The caller a bearer token stands for, or None (unknown, revoked, malformed)."""
        if self.root_token and auth.same(token, self.root_token):
            return Principal(Role.ROOT)
        parsed = auth.parse_admin_token(token)
        if parsed is None:
            return None
        site, token_id = parsed
        record = await self.store.get(site, token_id)
        if record is None or not auth.same(record["hash"], auth.digest(token)):
            return None
        return Principal(Role[record["role"].upper()], site, token_id)
