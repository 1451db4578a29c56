"""Bulk reads of one shard: visitor ids page by page (HSCAN of the shard's ordinal
map), then, in one pipelined round trip per page, every profile (MGET), and for
recompute the stored membership bitmaps (MGET) and due instants (ZMSCORE).

Every key of a shard carries the shard's hash tag, so each page is one MGET on one
node of a Redis Cluster too. A page is the unit of progress: `Page.cursor` is the
HSCAN cursor after it (0: the shard is done), which a job stores to resume there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys


@dataclass(slots=True)
class Page:
    """One page of a shard: ids, their profiles (None: gone) and, when asked for,
    their stored membership bitmaps (None: none) and due instants (None: not due)."""

    shard: int
    cursor: int
    ids: list[str]
    profiles: list[bytes | None]
    bits: list[bytes | None] | None = None
    due: list[float | None] | None = None


class BulkReader:
    def __init__(self, client: Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    async def pages(self, site: str, shard: int, size: int, *, cursor: int = 0,
                    membership: bool = False) -> AsyncIterator[Page]:  # fmt: skip
        """Pages of about `size` visitors of `shard`, from HSCAN position `cursor`."""
        k = self.keys
        base = f"{k.prefix}:{k.shard_tag(site, shard)}"
        ords, due = f"{base}:ords", k.due(site, shard)
        while True:
            with wrapped(f"scanning shard {shard}"):
                cursor, found = await self.client.hscan(ords, cursor, count=size)
            ids = [v.decode() for v in found.values()]
            page = Page(shard, int(cursor), ids, [])
            if ids:
                with wrapped(f"reading shard {shard}"):
                    async with self.client.pipeline(transaction=False) as pipe:
                        pipe.mget([f"{base}:p:{v}" for v in ids])
                        if membership:
                            pipe.mget([f"{base}:mb:{v}" for v in ids])
                            pipe.zmscore(due, ids)
                        got = await pipe.execute()
                page.profiles = got[0]
                if membership:
                    page.bits, page.due = got[1], got[2]
            yield page
            if page.cursor == 0:
                return

    async def raw_mget(self, site: str, shard: int, ids: list[str]) -> list[bytes | None]:
        """The profiles of `ids` (all of `shard`) in one MGET: the bench's baseline."""
        base = f"{self.keys.prefix}:{self.keys.shard_tag(site, shard)}"
        with wrapped(f"reading shard {shard}"):
            result: list[bytes | None] = await self.client.mget([f"{base}:p:{v}" for v in ids])
        return result
