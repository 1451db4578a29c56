"""Profiles in Redis: apply an event batch (one Lua call per visitor), read, count
(erasure: storage/erasure.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from segserver.errors import StorageError
from segserver.profile.identity import visitor_hash
from segserver.storage.client import Client
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts


@dataclass(frozen=True, slots=True)
class Applied:
    """The profile after the batch, the stored membership as it was, and per event:
    True applied, False duplicate id."""

    profile: bytes
    bits: bytes  # the stored membership bitmap (by segment slot) before this batch
    caps: dict[str, int]  # frequency-cap counters
    applied: list[bool]


@dataclass
class ProfileStore:
    client: Client
    scripts: Scripts
    keys: Keys
    dedup_window_seconds: int
    profile_ttl_seconds: int

    async def apply(
        self,
        site: str,
        visitor_id: str,
        template: bytes,
        events: Sequence[tuple[str | None, bytes]],
        now: float,
    ) -> Applied:
        """Apply `events` ((event id, packed ops) in order) atomically to one visitor."""
        keys, args = self._apply_call(site, visitor_id, template, events, now)
        return _applied(await self.scripts.call("apply_events", keys, args))

    async def apply_pipelined(
        self,
        site: str,
        batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]],
        template: bytes,
        now: float,
    ) -> list[Applied]:
        """`apply` for many visitors in one round trip (a single node: redis-py blocks
        scripts in cluster pipelines). Each visitor's batch stays atomic."""
        script = self.scripts.scripts["apply_events"]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for visitor_id, events in batches:
                    keys, args = self._apply_call(site, visitor_id, template, events, now)
                    await script(keys=keys, args=args, client=pipe)
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StorageError(f"Redis failed running apply_events: {exc}") from exc
        return [_applied(r) for r in results]

    def _apply_call(
        self, site: str, visitor_id: str, template: bytes,
        events: Sequence[tuple[str | None, bytes]], now: float,
    ) -> tuple[list[str], list[bytes | str | float | int]]:  # fmt: skip
        """KEYS and ARGV of lua/apply_events.lua (see its header)."""
        k = self.keys.visitor(site, visitor_id)
        args: list[bytes | str | float | int] = [
            repr(now), self.dedup_window_seconds, self.profile_ttl_seconds, template,
            visitor_id, visitor_hash(visitor_id),
        ]  # fmt: skip
        for event_id, ops in events:
            args.append(event_id or "")
            args.append(ops)
        return [k.profile, k.event_ids, k.shard_seq, k.shard_ordinals, k.bits, k.caps], args

    async def get(self, site: str, visitor_id: str) -> bytes | None:
        try:
            blob: bytes | None = await self.client.get(self.keys.visitor(site, visitor_id).profile)
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading a profile failed: {exc}") from exc
        return blob

    async def count(self, site: str) -> int:
        """Visitors with a profile (sum over shards of the ordinal maps)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.keys.shards):
                    base = f"{self.keys.prefix}:{self.keys.shard_tag(site, shard)}"
                    pipe.hlen(f"{base}:ords")
                return sum(await pipe.execute())
        except (RedisError, OSError) as exc:
            raise StorageError(f"counting profiles failed: {exc}") from exc


def _applied(result: list[Any]) -> Applied:
    flat = result[2]
    caps = {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
    return Applied(result[0], result[1] or b"", caps, [bool(s) for s in result[3:]])
