"""Catalogue bookkeeping around the redis-om records: per-site id sets (so listing
never SCANs the keyspace), version history, stable bit slots, and compare-and-set
writes. Every key carries the `{<site>}` hash tag, so one transaction covers a
record, its history and the site's catalogue version (lua/write_record.lua), on a
cluster too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from segserver.errors import ConflictError
from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.scripts import Scripts

HISTORY = 50  # previous versions kept per record


class CatalogueStore:
    def __init__(self, client: Client, prefix: str, scripts: Scripts) -> None:
        self.client = client
        self.prefix = prefix
        self.scripts = scripts

    def _k(self, site: str, *parts: str) -> str:
        return ":".join((self.prefix, f"{{{site}}}", *parts))

    def record_key(self, site: str, kind: str, item: str) -> str:
        """The redis-om key of a record (model_key_prefix `{<site>}:<kind>`)."""
        return self._k(site, kind, item)

    async def ids(self, site: str, kind: str) -> list[str]:
        with wrapped(f"reading the {kind} index"):
            return sorted(await self.client.smembers(self._k(site, f"{kind}s")))

    async def versions(self, site: str, kind: str, item: str) -> list[dict[str, Any]]:
        """Previous versions, newest first."""
        with wrapped(f"reading {kind} versions"):
            raw = await self.client.lrange(self._k(site, f"{kind}ver", item), 0, -1)
        return [orjson.loads(r) for r in raw]

    async def next_slot(self, site: str, kind: str) -> int:
        """A number never given before for this site and kind (stable bit positions)."""
        with wrapped(f"allocating a {kind} slot"):
            return int(await self.client.incr(self._k(site, f"{kind}slot"))) - 1

    async def slot_count(self, site: str, kind: str) -> int:
        """How many slots were ever given (deleted items' included)."""
        with wrapped(f"reading the {kind} slots"):
            return int(await self.client.get(self._k(site, f"{kind}slot")) or 0)

    async def catalogue_version(self, site: str) -> int:
        with wrapped("reading the catalogue version"):
            return int(await self.client.get(self._k(site, "catver")) or 0)

    async def bump(self, site: str) -> int:
        """A change outside the records (the site's policy) that decisions depend on."""
        with wrapped("bumping the catalogue version"):
            return int(await self.client.incr(self._k(site, "catver")))

    async def write(
        self,
        site: str,
        kind: str,
        item: str,
        *,
        expect: int | None,
        fields: Mapping[str, str] | None,
        previous: dict[str, Any] | None = None,
    ) -> int:
        """Save `fields` as the record (or, with None, delete it) atomically, if its
        stored `version` is `expect` (None: the record must not exist yet). Keeps
        `previous` in the history, maintains the id set and bumps the site's catalogue
        version, which it returns; raises ConflictError on a concurrent edit."""
        keys = [self.record_key(site, kind, item), self._k(site, f"{kind}ver", item),
                self._k(site, f"{kind}s"), self._k(site, "catver")]  # fmt: skip
        args: list[str | int] = [
            "" if expect is None else str(expect), "delete" if fields is None else "save", item,
            "" if previous is None else orjson.dumps(previous).decode(), HISTORY,
        ]  # fmt: skip
        for name, value in (fields or {}).items():
            args += [name, value]
        done, value = await self.scripts.call("write_record", keys, args)
        if int(done) != 1:
            stored = value.decode() if isinstance(value, bytes) else value
            raise _conflict(kind, item, stored or None, expect)
        return int(value)


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
