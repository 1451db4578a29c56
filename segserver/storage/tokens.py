"""Per-site admin tokens in Redis: one hash per site, `<prefix>:{<site>}:admin-tokens`,
token id → JSON record `{id, name, role, hash, created_at}`. Only the SHA-256 of a
token's secret is stored (tokens are 256 random bits: a slow hash adds nothing), so a
leaked database does not hand out admin access.
"""

from __future__ import annotations

from typing import Any

import orjson

from segserver.storage.client import Client
from segserver.storage.errors import wrapped


class TokenStore:
    def __init__(self, client: Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, site: str) -> str:
        return f"{self.prefix}:{{{site}}}:admin-tokens"

    async def add(self, site: str, token_id: str, record: dict[str, Any]) -> None:
        with wrapped("writing an admin token"):
            await self.client.hset(self._key(site), token_id, orjson.dumps(record))

    async def get(self, site: str, token_id: str) -> dict[str, Any] | None:
        with wrapped("reading an admin token"):
            raw = await self.client.hget(self._key(site), token_id)
        return None if raw is None else dict(orjson.loads(raw))

    async def all(self, site: str) -> list[dict[str, Any]]:
        with wrapped("listing admin tokens"):
            raw = await self.client.hvals(self._key(site))
        return sorted((dict(orjson.loads(r)) for r in raw), key=lambda r: r["created_at"])

    async def remove(self, site: str, token_id: str) -> bool:
        with wrapped("revoking an admin token"):
            return bool(await self.client.hdel(self._key(site), token_id))

    async def remove_all(self, site: str) -> None:
        with wrapped("revoking admin tokens"):
            await self.client.delete(self._key(site))
