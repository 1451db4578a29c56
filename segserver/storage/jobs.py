"""Job records (state, progress) and the pipelined reads bulk work needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.exceptions import RedisError

from segserver.errors import NotFoundError, StorageError
from segserver.storage.client import Client
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts

JOBS_KEPT = 100


class JobStore:
    def __init__(self, client: Client, keys: Keys, scripts: Scripts) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts

    def _key(self, site: str, job: str) -> str:
        return f"{self.keys.prefix}:{{{site}}}:job:{job}"

    def _list(self, site: str) -> str:
        return f"{self.keys.prefix}:{{{site}}}:jobs"

    async def save(self, site: str, job: str, fields: dict[str, Any], *, new: bool = False) -> None:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self._key(site, job), mapping={k: str(v) for k, v in fields.items()})
                if new:
                    pipe.lpush(self._list(site), job)
                    pipe.ltrim(self._list(site), 0, JOBS_KEPT - 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StorageError(f"saving job {job} failed: {exc}") from exc

    async def get(self, site: str, job: str) -> dict[str, str]:
        try:
            raw = await self.client.hgetall(self._key(site, job))
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading job {job} failed: {exc}") from exc
        if not raw:
            raise NotFoundError(f"job {job!r} does not exist")
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def claim(self, site: str, job: str, owner: str, now: float,
                    lease: float) -> dict[str, str] | None:  # fmt: skip
        """Take over a job left by a dead or stopped owner (lua/claim_job.lua): its
        fields, or None if it is not claimable (finished, or its owner is alive)."""
        raw = await self.scripts.call("claim_job", [self._key(site, job)],
                                      [owner, repr(now), repr(lease)])  # fmt: skip
        if not raw:
            return None
        text = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
        return dict(zip(text[::2], text[1::2], strict=True))

    async def recent(self, site: str) -> list[str]:
        try:
            return [j.decode() for j in await self.client.lrange(self._list(site), 0, -1)]
        except (RedisError, OSError) as exc:
            raise StorageError(f"listing jobs failed: {exc}") from exc


class ShardReader:
    """Every visitor of a shard, chunk by chunk, with its profile: HSCAN of the
    shard's ordinal map, then one MGET per chunk."""

    def __init__(self, client: Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    async def chunks(
        self, site: str, shard: int, size: int
    ) -> AsyncIterator[tuple[list[str], list[bytes | None]]]:
        ords = f"{self.keys.prefix}:{self.keys.shard_tag(site, shard)}:ords"
        cursor = 0
        pending: list[str] = []
        try:
            while True:
                cursor, page = await self.client.hscan(ords, cursor, count=size)
                pending += [v.decode() for v in page.values()]
                while len(pending) >= size or (cursor == 0 and pending):
                    ids, pending = pending[:size], pending[size:]
                    yield ids, await self.read(site, ids)
                if cursor == 0:
                    return
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading shard {shard} failed: {exc}") from exc

    async def read(self, site: str, ids: Sequence[str]) -> list[bytes | None]:
        result: list[bytes | None] = await self.client.mget(
            [self.keys.visitor(site, vid).profile for vid in ids]
        )
        return result
