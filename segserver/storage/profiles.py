"""Profiles in Redis: apply an event batch (one Lua call per visitor), read, count
(erasure: storage/erasure.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from segserver.errors import StorageError
from segserver.profile.identity import visitor_hash
from segserver.profile.schema import Layout
from segserver.storage.client import Client
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts


@dataclass(frozen=True, slots=True)
class Applied:
    """The profile after the batch, the stored membership as it was, and per event:
    True applied, False duplicate id."""

    profile: bytes  # stored bytes (codec.features decodes them); b"" = no profile
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
        layout: Layout,
        events: Sequence[tuple[str | None, bytes]],
        now: float,
    ) -> Applied:
        """Apply `events` ((event id, packed ops) in order) atomically to one visitor."""
        keys, args = self._apply_call(site, visitor_id, layout, events, now)
        return _applied(await self.scripts.call("apply_events", keys, args))

    async def apply_pipelined(
        self,
        site: str,
        batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]],
        layout: Layout,
        now: float,
    ) -> list[Applied]:
        """`apply` for many visitors in one round trip (a single node: redis-py blocks
        scripts in cluster pipelines). Each visitor's batch stays atomic."""
        script = self.scripts.scripts["apply_events"]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for visitor_id, events in batches:
                    keys, args = self._apply_call(site, visitor_id, layout, events, now)
                    await script(keys=keys, args=args, client=pipe)
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StorageError(f"Redis failed running apply_events: {exc}") from exc
        return [_applied(r) for r in results]

    def _apply_call(
        self, site: str, visitor_id: str, layout: Layout,
        events: Sequence[tuple[str | None, bytes]], now: float,
    ) -> tuple[list[str], list[bytes | str | float | int]]:  # fmt: skip
        """KEYS and ARGV of lua/apply_events.lua (see its header)."""
        k = self.keys.visitor(site, visitor_id)
        args: list[bytes | str | float | int] = [
            repr(now), self.dedup_window_seconds, self.profile_ttl_seconds,
            layout.window_slots, visitor_id, visitor_hash(visitor_id),
        ]  # fmt: skip
        for event_id, ops in events:
            args.append(event_key(event_id) if event_id else b"")
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


def event_key(event_id: str) -> bytes:
    """What lua/apply_events.lua remembers of an event id: the first 8 bytes of its SHA-1
    (the script derives the same from ids it finds in the sorted sets of the format
    before). Two ids of one visitor within the dedup window collide with a probability
    near n² / 2⁶⁵."""
    return hashlib.sha1(event_id.encode(), usedforsecurity=False).digest()[:8]


def _applied(result: list[Any]) -> Applied:
    flat = result[2]
    caps = {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
    return Applied(result[0], result[1] or b"", caps, [bool(s) for s in result[3:]])
