"""Reads and writes behind segment analytics: sizes (BITCOUNT), set expressions
(lua/combine_segments.lua), pair overlaps (lua/overlap_segments.lua), static members
(lua/set_static_members.lua), size history, and the per-shard reads preview and export
need. Everything fans out over shards with one pipeline (one round trip per node);
every key of one script call carries the shard's hash tag, so it runs on one Redis
Cluster node. Temporary keys live inside the shard's tag and expire on their own.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from redis.exceptions import RedisError

from segserver.errors import StorageError
from segserver.storage.client import Client
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts

#: One instruction of a compiled set expression: op ("and" | "or"), its positive and
#: excluded operands. An operand < L names leaf L (a segment slot), L + j the result
#: of instruction j. The last instruction's result is the expression's.
Instruction = tuple[str, list[int], list[int]]
RETRIES = 5


def bitmap_ordinals(bits: bytes | None) -> npt.NDArray[np.int64]:
    """Set bits of a Redis bitmap (bit i = byte i // 8, bit 7 - i % 8)."""
    unpacked = np.unpackbits(np.frombuffer(bits or b"", np.uint8), bitorder="big")
    return np.flatnonzero(unpacked).astype(np.int64)


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


@dataclass
class Combined:
    """An expression's result: count, sampled (shard, ordinal) and the result keys."""

    count: int
    sample: list[tuple[int, int]]
    result_keys: list[str]  # per shard, alive for `temp_ttl_ms`


@dataclass
class AnalyticsStore:
    client: Client
    scripts: Scripts
    keys: Keys
    temp_ttl_ms: int = 60_000

    def _ords(self, site: str, shard: int) -> str:
        return self.keys.shard_key(site, shard, "ords")

    async def _pipe(self, fill: Any, what: str) -> list[Any]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                fill(pipe)
                result: list[Any] = await pipe.execute()
                return result
        except (RedisError, OSError) as exc:
            raise StorageError(f"{what} failed: {exc}") from exc

    # -- counting ---------------------------------------------------------------------

    async def sizes(self, site: str, slots: Sequence[int]) -> list[int]:
        """Members of each segment: the sum over shards of BITCOUNT, in one pipeline."""
        shards = self.keys.shards

        def fill(pipe: Any) -> None:
            for slot in slots:
                for shard in range(shards):
                    pipe.bitcount(self.keys.segment_bitmap(site, shard, int(slot)))

        counts = await self._pipe(fill, "counting segment members")
        return [sum(counts[i * shards : (i + 1) * shards]) for i in range(len(slots))]

    async def population(self, site: str) -> tuple[list[int], list[int]]:
        """Per shard: ordinals handed out so far (`seq`) and visitors present (HLEN ords)."""

        def fill(pipe: Any) -> None:
            for shard in range(self.keys.shards):
                pipe.get(self.keys.shard_key(site, shard, "seq"))
                pipe.hlen(self._ords(site, shard))

        raw = await self._pipe(fill, "counting visitors")
        return [int(v or 0) for v in raw[0::2]], [int(v) for v in raw[1::2]]

    async def combine(
        self, site: str, leaves: Sequence[int], program: Sequence[Instruction], sample: int,
        *, keep: bool = True,
    ) -> Combined:  # fmt: skip
        """Run a compiled set expression in every shard (one script call each). With
        `keep=False` (a caller that wants only the count) its result keys are deleted at
        once rather than left to expire (the admin page's who-wins table runs dozens)."""
        token = secrets.token_hex(6)
        n_leaves = len(leaves)
        calls = []
        for shard in range(self.keys.shards):
            tmp = self.keys.shard_key(site, shard, f"tmp:{token}")
            keys = [f"{tmp}:s", *(self.keys.segment_bitmap(site, shard, s) for s in leaves)]
            keys += [f"{tmp}:{j}" for j in range(len(program))]
            args: list[str | int] = [self.temp_ttl_ms, sample]
            for j, (op, pos, neg) in enumerate(program):
                # Lua indexes KEYS from 1; KEYS[1] is the scratch key
                args += [op, 2 + n_leaves + j, len(pos), *(2 + r for r in pos),
                         len(neg), *(2 + r for r in neg)]  # fmt: skip
            calls.append((keys, args))
        results = [await self.scripts.call("combine_segments", k, a) for k, a in calls]
        count = sum(int(r[0]) for r in results)
        picked = [(shard, int(o)) for shard, r in enumerate(results) for o in r[1:]]
        if not keep:
            await self._pipe(lambda pipe: [pipe.delete(*k[1 + n_leaves :]) for k, _ in calls],
                             "deleting set-expression results")  # fmt: skip
            return Combined(count, picked, [])
        return Combined(count, picked, [k[-1] for k, _ in calls])

    async def overlap(self, site: str, slots: Sequence[int]) -> npt.NDArray[np.int64]:
        """n × n matrix: members in both segments (the diagonal: each one's size)."""
        n = len(slots)
        matrix = np.zeros((n, n), np.int64)
        iu = np.triu_indices(n)
        token = secrets.token_hex(6)
        for shard in range(self.keys.shards):
            keys = [self.keys.shard_key(site, shard, f"tmp:{token}:o")]
            keys += [self.keys.segment_bitmap(site, shard, int(s)) for s in slots]
            counts = await self.scripts.call("overlap_segments", keys, [])
            matrix[iu] += np.asarray(counts, np.int64)
        matrix.T[iu] = matrix[iu]
        return matrix

    # -- reading members and profiles ---------------------------------------------------

    async def bitmaps(self, keys: Sequence[str]) -> list[bytes | None]:
        def fill(pipe: Any) -> None:
            for key in keys:
                pipe.get(key)

        return await self._pipe(fill, "reading bitmaps")

    async def segment_bitmaps(self, site: str, slot: int) -> list[bytes | None]:
        """The segment's bitmap of every shard."""
        shards = range(self.keys.shards)
        return await self.bitmaps([self.keys.segment_bitmap(site, s, slot) for s in shards])

    async def ids_of(
        self, site: str, by_shard: Mapping[int, Sequence[int]]
    ) -> dict[int, list[str | None]]:
        """Visitor ids of ordinals, per shard (None: no visitor has that ordinal now)."""
        shards = [s for s, ords in by_shard.items() if len(ords)]

        def fill(pipe: Any) -> None:
            for shard in shards:
                pipe.hmget(self._ords(site, shard), [int(o) for o in by_shard[shard]])

        raw = await self._pipe(fill, "reading visitor ids")
        out: dict[int, list[str | None]] = {s: [] for s in by_shard}
        for shard, ids in zip(shards, raw, strict=True):
            out[shard] = [_text(v) for v in ids]
        return out

    # -- bulk seeding (segserver demo) --------------------------------------------------

    async def seed_profiles(
        self, site: str, shard: int, ids: Sequence[str], blobs: Sequence[bytes],
        ttl_seconds: int,
    ) -> int:  # fmt: skip
        """Create profiles of new visitors of one shard (lua/seed_profiles.lua); how many."""
        keys = [self.keys.shard_key(site, shard, "seq"), self._ords(site, shard)]
        base = self.keys.shard_key(site, shard, "p")  # = Keys.visitor(...).profile
        keys += [f"{base}:{vid}" for vid in ids]
        args: list[str | bytes | int] = [ttl_seconds]
        for vid, blob in zip(ids, blobs, strict=True):
            args += [vid, blob]
        return int(await self.scripts.call("seed_profiles", keys, args))

    async def shard_profiles(
        self, site: str, ids_by_shard: Mapping[int, Sequence[str]]
    ) -> dict[int, list[bytes | None]]:
        """Profiles of visitors whose shard is known: one MGET per shard, concurrently
        (a cluster pipeline refuses MGET; each shard's keys share a slot)."""
        shards = [s for s, ids in ids_by_shard.items() if ids]

        async def read(shard: int) -> list[bytes | None]:
            base = self.keys.shard_key(site, shard, "p")
            got: list[bytes | None] = await self.client.mget(
                [f"{base}:{vid}" for vid in ids_by_shard[shard]]
            )
            return got

        try:
            raw = await asyncio.gather(*(read(s) for s in shards))
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading profiles failed: {exc}") from exc
        return dict(zip(shards, raw, strict=True))

    # -- static members ---------------------------------------------------------------

    async def set_static(
        self, site: str, shard: int, slot: int, add: Sequence[str], *, replace: bool,
        ttl_seconds: int,
    ) -> tuple[int, list[str]]:  # fmt: skip
        """Add visitors of one shard to a static segment (and with `replace`, drop every
        other member first), atomically; (added, ids without a profile)."""
        bitmap = self.keys.segment_bitmap(site, shard, slot)
        adds: list[str] = []
        for vid in add:
            vk = self.keys.visitor(site, vid)
            adds += [vk.profile, vk.bits]
        for _ in range(RETRIES):
            snapshot, removed = b"", []
            if replace:
                snapshot = (await self.bitmaps([bitmap]))[0] or b""
                ords = bitmap_ordinals(snapshot)
                found = (await self.ids_of(site, {shard: ords.tolist()}))[shard]
                removed = [(int(o), v) for o, v in zip(ords, found, strict=True) if v]
            keys = [bitmap, *(self.keys.visitor(site, v).bits for _, v in removed), *adds]
            args: list[str | int | bytes] = [slot, len(removed), snapshot, "1" if replace else "0",
                                             ttl_seconds, *(o for o, _ in removed)]  # fmt: skip
            result = await self.scripts.call("set_static_members", keys, args)
            if result != -1:
                return int(result[0]), [add[int(i)] for i in result[1:]]
        raise StorageError("the static segment kept changing while writing its members")

    # -- size history -----------------------------------------------------------------

    def _history(self, site: str, slot: int) -> str:
        return f"{self.keys.prefix}:{{{site}}}:hist:{slot}"

    async def claim_snapshot(self, site: str, interval_index: int, ttl_seconds: int) -> bool:
        """True for exactly one caller per site and interval (SET NX with an expiry)."""
        key = f"{self.keys.prefix}:{{{site}}}:hist:at:{interval_index}"
        try:
            return bool(await self.client.set(key, b"1", nx=True, ex=max(ttl_seconds, 1)))
        except (RedisError, OSError) as exc:
            raise StorageError(f"claiming a size snapshot failed: {exc}") from exc

    async def add_history(
        self, site: str, sizes: dict[int, int], at: float, keep_after: float
    ) -> None:
        """Record each slot's size at `at`; drop points older than `keep_after`."""

        def fill(pipe: Any) -> None:
            for slot, size in sizes.items():
                key = self._history(site, slot)
                pipe.zadd(key, {f"{at!r}:{size}": at})
                pipe.zremrangebyscore(key, "-inf", f"({keep_after!r}")

        await self._pipe(fill, "recording size history")

    async def history(self, site: str, slot: int, since: float) -> list[tuple[float, int]]:
        try:
            raw = await self.client.zrangebyscore(self._history(site, slot), since, "+inf")
        except (RedisError, OSError) as exc:
            raise StorageError(f"reading size history failed: {exc}") from exc
        points = []
        for member in raw:
            at, size = (_text(member) or "").rsplit(":", 1)
            points.append((float(at), int(size)))
        return points
