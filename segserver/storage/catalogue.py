"""Catalogue bookkeeping around the redis-om records: per-site id sets (so listing
never SCANs the keyspace), version history, stable bit slots, and compare-and-set
writes. Every key carries the `{<site>}` hash tag, so one transaction covers a
record, its history and the site's catalogue version, on a cluster too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import RedisError, WatchError

from segserver.errors import ConflictError, StorageError
from segserver.storage.client import Client

HISTORY = 50  # previous versions kept per record


class CatalogueStore:
    def __init__(self, client: Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _k(self, site: str, *parts: str) -> str:
        return ":".join((self.prefix, f"{{{site}}}", *parts))

    def record_key(self, site: str, kind: str, item: str) -> str:
        """The redis-om key of a record (model_key_prefix `{<site>}:<kind>`)."""
        return self._k(site, kind, item)

    async def ids(self, site: str, kind: str) -> list[str]:
        try:
            return sorted(await self.client.smembers(self._k(site, f"{kind}s")))
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading the {kind} index failed: {exc}") from exc

    async def versions(self, site: str, kind: str, item: str) -> list[dict[str, Any]]:
        """Previous versions, newest first."""
        try:
            raw = await self.client.lrange(self._k(site, f"{kind}ver", item), 0, -1)
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading {kind} versions failed: {exc}") from exc
        return [orjson.loads(r) for r in raw]

    async def next_slot(self, site: str, kind: str) -> int:
        """A number never given before for this site and kind (stable bit positions)."""
        try:
            return int(await self.client.incr(self._k(site, f"{kind}slot"))) - 1
        except (RedisError, OSError) as exc:
            raise StorageError(f"allocating a {kind} slot failed: {exc}") from exc

    async def catalogue_version(self, site: str) -> int:
        try:
            return int(await self.client.get(self._k(site, "catver")) or 0)
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading the catalogue version failed: {exc}") from exc

    async def bump(self, site: str) -> int:
        """A change outside the records (the site's policy) that decisions depend on."""
        try:
            return int(await self.client.incr(self._k(site, "catver")))
        except (RedisError, OSError) as exc:
            raise StorageError(f"bumping the catalogue version failed: {exc}") from exc

    async def write(
        self,
        site: str,
        kind: str,
        item: str,
        *,
        expect: int | None,
        save: Callable[[Any], Awaitable[Any]] | None,
        previous: dict[str, Any] | None = None,
    ) -> int:
        """Save (or, with `save=None`, delete) a record atomically, if its stored
        `version` is `expect` (None: the record must not exist yet). Keeps `previous`
        in the history, maintains the id set and bumps the site's catalogue version.
        Returns the new catalogue version; raises ConflictError on a lost race."""
        key = self.record_key(site, kind, item)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                stored = await pipe.hget(key, "version")
                if (stored is None) != (expect is None) or (
                    stored is not None and int(stored) != expect
                ):
                    await pipe.unwatch()
                    raise _conflict(kind, item, stored, expect)
                pipe.multi()
                if save is not None:
                    await save(pipe)
                    pipe.sadd(self._k(site, f"{kind}s"), item)
                else:
                    pipe.delete(key)
                    pipe.delete(self._k(site, f"{kind}ver", item))
                    pipe.srem(self._k(site, f"{kind}s"), item)
                if previous is not None and save is not None:
                    history = self._k(site, f"{kind}ver", item)
                    pipe.lpush(history, orjson.dumps(previous))
                    pipe.ltrim(history, 0, HISTORY - 1)
                pipe.incr(self._k(site, "catver"))
                results = await pipe.execute()
        except WatchError:
            raise _conflict(kind, item, "changed", expect) from None
        except (RedisError, OSError) as exc:
            raise StorageError(f"saving {kind} {item!r} failed: {exc}") from exc
        return int(results[-1])


def _conflict(kind: str, item: str, stored: object, expect: int | None) -> ConflictError:
    if expect is None:
        return ConflictError(f"id: {kind} {item!r} already exists", code=f"{kind}_exists")
    if stored is None:
        return ConflictError(f"{kind} {item!r} does not exist any more", code="stale_version")
    return ConflictError(
        f"version: {kind} {item!r} was changed by someone else (you edited version {expect}, "
        f"it is now {stored}); reload and apply your change again",
        code="stale_version",
    )
