"""Stored membership: per visitor a bitmap by segment slot (`mb:<visitor>`) and the
version of the evaluation stored (hash `m:<visitor>`: v = profile version,
t = evaluation time); per shard one bitmap per segment over visitor ordinals, the
change stream, visitor histories and the exact-expiry set. Written by
lua/commit_membership.lua (expiry, recompute, and a page view whose read went stale)
and lua/finish_visitor.lua (page views and events, storage.finish). Bit order: see
segserver.bitsets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segserver.bitsets import bitmap_slots
from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts

COMMITTED, SKIPPED = 1, 0


@dataclass(frozen=True, slots=True)
class Stored:
    """A visitor's stored membership (version -1: never evaluated)."""

    version: float = -1.0
    time: float = -1.0
    bits: bytes = b""

    def slots(self) -> npt.NDArray[np.int64]:
        """Slots whose bit is set."""
        return bitmap_slots(self.bits)


@dataclass
class Evaluated:
    """One visitor's evaluation to commit."""

    visitor_id: str
    ordinal: int
    version: float  # profile version evaluated
    time: float  # evaluation instant
    values: npt.NDArray[np.bool_]  # in each evaluated segment (program order) or not
    next_change: float  # math.inf: nothing time-based can flip


@dataclass
class MembershipStore:
    client: Client
    scripts: Scripts
    keys: Keys
    stream_max: int
    history_len: int
    ttl_seconds: int

    async def commit(
        self, site: str, shard: int, items: Sequence[Evaluated], slots: Sequence[int],
        segment_ids: Sequence[str], cause: str, now: float,
    ) -> list[int]:  # fmt: skip
        """Commit evaluations of visitors of one shard, whose `values` are for the
        segments `segment_ids` (stored at `slots`); per visitor COMMITTED or SKIPPED
        (a newer evaluation is already stored)."""
        if not items:
            return []
        k = self.keys
        keys = [k.changes(site, shard), k.due(site, shard), k.claimed(site, shard)]
        keys += [k.segment_bitmap(site, shard, int(slot)) for slot in slots]
        args: list[str | bytes | int] = [
            repr(now), cause, self.stream_max, self.history_len, self.ttl_seconds, len(slots),
            *(int(slot) for slot in slots), *segment_ids,
        ]  # fmt: skip
        for item in items:
            vk = k.visitor(site, item.visitor_id)
            keys += [vk.membership, vk.bits, vk.history]
            nxt = "inf" if math.isinf(item.next_change) else repr(item.next_change)
            flags = (item.values.astype(np.uint8) + 48).tobytes()  # b"0" / b"1" per segment
            args += [item.visitor_id, item.ordinal, repr(item.version), repr(item.time), nxt,
                     flags]  # fmt: skip
        result = await self.scripts.call("commit_membership", keys, args)
        return [int(r) for r in result]

    async def read(self, site: str, visitor_id: str) -> Stored:
        vk = self.keys.visitor(site, visitor_id)
        with wrapped("reading membership"):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hmget(vk.membership, ["v", "t"])
                pipe.get(vk.bits)
                (v, t), bits = await pipe.execute()
        if v is None:
            return Stored(bits=bits or b"")
        return Stored(float(v), float(t), bits or b"")

    async def history(self, site: str, visitor_id: str) -> list[dict[str, object]]:
        with wrapped("reading history"):
            raw = await self.client.lrange(self.keys.visitor(site, visitor_id).history, 0, -1)
        out: list[dict[str, object]] = []
        for entry in raw:
            text = entry.decode() if isinstance(entry, bytes) else entry
            t, change, segment, why = text.split("|")
            out.append({"time": float(t), "change": change, "segment": segment, "cause": why})
        return out


@dataclass
class DueStore:
    """The exact-expiry queue of each shard (see lua/claim_due.lua)."""

    client: Client
    scripts: Scripts
    keys: Keys

    async def claim(self, site: str, shard: int, now: float, lease: float, limit: int) -> list[str]:
        raw = await self.scripts.call(
            "claim_due", [self.keys.due(site, shard), self.keys.claimed(site, shard)],
            [repr(now), repr(lease), limit],
        )  # fmt: skip
        return [v.decode() if isinstance(v, bytes) else v for v in raw]

    async def release(self, site: str, shard: int, visitor_ids: Sequence[str]) -> None:
        """Drop claims whose visitor is gone (no profile any more)."""
        if visitor_ids:
            with wrapped("releasing claims"):
                await self.client.zrem(self.keys.claimed(site, shard), *visitor_ids)

    async def hand_back(self, site: str, shard: int, visitor_ids: Sequence[str],
                        now: float) -> None:  # fmt: skip
        """End the lease of claims whose work failed now, so the next round takes them
        over at once instead of after the lease (`XX`: a claim committed meanwhile is
        gone from the set and stays gone)."""
        if visitor_ids:
            with wrapped("handing back claims"):
                await self.client.zadd(self.keys.claimed(site, shard),
                                       dict.fromkeys(visitor_ids, now), xx=True)  # fmt: skip

    async def read_profiles(self, site: str, visitor_ids: Sequence[str]) -> list[bytes | None]:
        """Profiles, in one round trip."""
        with wrapped("reading profiles"):
            result: list[bytes | None] = await self.client.mget(
                [self.keys.visitor(site, vid).profile for vid in visitor_ids]
            )
        return result
