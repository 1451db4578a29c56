"""Erasure, expiry clean-up and export of one visitor's data in Redis.

What a visitor leaves (storage.keys): its own keys (profile, event ids, membership,
bitmap, history, caps, arms, recently viewed, feedback ids), its ordinal in the shard's
`ords`, its bit in each segment bitmap of the shard, its entries in the shard's `due`
and `claimed` sets and change stream, and trigger deliveries about it (retries, dead
letters). Aggregates (campaign counters, popularity, dictionary values) name nobody.

The change stream is scanned in chunks (XRANGE, 1 000 entries per call): erasure is
rare and the stream is capped (`change_stream_max_length` per shard).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from segserver.storage.changes import ChangeStore
from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys, VisitorKeys
from segserver.storage.scripts import Scripts

CHUNK = 1000


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass
class ErasureStore:
    client: Client  # raw (bytes)
    scripts: Scripts
    keys: Keys
    changes: ChangeStore
    stream_max: int

    def _side_keys(self, vk: VisitorKeys) -> list[str]:
        return [k for k in vk.all() if k not in (vk.profile, vk.event_ids, vk.bits)]

    async def erase(self, site: str, visitor_id: str, segments: Sequence[tuple[int, str]],
                    emit: bool, now: float) -> tuple[bool, list[str]]:  # fmt: skip
        """Erase the visitor's keys, ordinal, segment bits (`segments`: every (slot, id)
        of the site) and due entries; with `emit`, an exit per segment it was in.
        (had a profile, stream ids of the exits)."""
        vk = self.keys.visitor(site, visitor_id)
        keys = [vk.profile, vk.event_ids, vk.shard_ordinals, vk.bits,
                self.keys.due(site, vk.shard), self.keys.claimed(site, vk.shard),
                self.keys.changes(site, vk.shard),
                *(self.keys.segment_bitmap(site, vk.shard, slot) for slot, _ in segments),
                *self._side_keys(vk)]  # fmt: skip
        args = [visitor_id, len(segments), int(emit), self.stream_max, repr(now),
                *(sid for _, sid in segments)]  # fmt: skip
        raw = await self.scripts.call("delete_visitor", keys, args)
        return bool(int(raw[0])), [_text(r) for r in raw[1:]]

    async def scrub_stream(self, site: str, shard: int, visitors: Collection[str],
                           keep: Collection[str] = ()) -> int:  # fmt: skip
        """Delete the shard's change-stream entries about `visitors` (but the ids in
        `keep`: exits just emitted for subscribers); how many."""
        key = self.keys.changes(site, shard)
        start, deleted = "-", 0
        with wrapped("scrubbing a change stream"):
            while True:
                entries = await self.client.xrange(key, start, "+", count=CHUNK)
                gone = [
                    _text(eid)
                    for eid, fields in entries
                    if _text(fields.get(b"v", b"")) in visitors and _text(eid) not in keep
                ]
                if gone:
                    deleted += int(await self.client.xdel(key, *gone))
                if len(entries) < CHUNK:
                    return deleted
                start = "(" + _text(entries[-1][0])

    async def scrub_triggers(self, site: str, visitors: Collection[str]) -> int:
        """Forget dead letters and pending retries of deliveries about `visitors`."""
        dead_key = self.changes.site_key(site, "trigger-dead")
        records_key = self.changes.site_key(site, "trigger-deliveries")
        retries_key = self.changes.site_key(site, "trigger-retries")
        removed = 0
        with wrapped("scrubbing trigger deliveries"):
            for record in await self.client.lrange(dead_key, 0, -1):
                if _visitor_of(record) in visitors:
                    removed += int(await self.client.lrem(dead_key, 0, record))
            async for delivery_id, record in self.client.hscan_iter(records_key, count=CHUNK):
                if _visitor_of(record) in visitors:
                    await self.client.hdel(records_key, delivery_id)
                    await self.client.zrem(retries_key, delivery_id)
                    removed += 1
        return removed

    async def stream_entries(self, site: str, visitor_id: str) -> list[dict[str, Any]]:
        """The change-stream entries about the visitor (export)."""
        key = self.keys.changes(site, self.keys.visitor(site, visitor_id).shard)
        start, out = "-", []
        with wrapped("reading a change stream"):
            while True:
                entries = await self.client.xrange(key, start, "+", count=CHUNK)
                for eid, fields in entries:
                    if _text(fields.get(b"v", b"")) == visitor_id:
                        out.append(
                            {"id": _text(eid), **{_text(k): _text(v) for k, v in fields.items()}}
                        )
                if len(entries) < CHUNK:
                    return out
                start = "(" + _text(entries[-1][0])

    async def dead_letters(self, site: str, visitor_id: str) -> list[dict[str, Any]]:
        with wrapped("reading dead letters"):
            raw = await self.client.lrange(self.changes.site_key(site, "trigger-dead"), 0, -1)
        return [dict(orjson.loads(r)) for r in raw if _visitor_of(r) == visitor_id]

    async def own_keys(self, site: str, visitor_id: str) -> dict[str, Any]:
        """The visitor's own keys, read in one round trip (export)."""
        vk = self.keys.visitor(site, visitor_id)
        with wrapped("reading a visitor"):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(vk.membership)
                pipe.get(vk.bits)
                pipe.lrange(vk.history, 0, -1)
                pipe.hgetall(vk.caps)
                pipe.hgetall(vk.arms)
                pipe.lrange(vk.recent, 0, -1)
                pipe.zrange(vk.event_ids, 0, -1)
                pipe.hkeys(vk.feedback)
                pipe.zscore(self.keys.due(site, vk.shard), visitor_id)
                (membership, bits, history, caps, arms, recent, event_ids, feedback,
                 due) = await pipe.execute()  # fmt: skip
        return {
            "membership": {_text(k): _text(v) for k, v in membership.items()},
            "bits": bits or b"", "history": [_text(h) for h in history],
            "caps": {_text(k): int(v) for k, v in caps.items()},
            "arms": {_text(k): _text(v) for k, v in arms.items()},
            "recent": [_text(r) for r in recent], "event_ids": [_text(e) for e in event_ids],
            "feedback": [_text(f) for f in feedback], "due": None if due is None else float(due),
        }  # fmt: skip

    # -- expiry -------------------------------------------------------------------------

    async def ordinals(self, site: str, shard: int, cursor: int, count: int
                       ) -> tuple[int, list[tuple[int, str]]]:  # fmt: skip
        """One HSCAN step over the shard's ordinals: (next cursor, [(ordinal, visitor)])."""
        with wrapped("scanning ordinals"):
            nxt, found = await self.client.hscan(self.keys.shard_key(site, shard, "ords"),
                                                 cursor, count=count)  # fmt: skip
        return int(nxt), [(int(_text(o)), _text(v)) for o, v in found.items()]

    async def stale(self, site: str, pairs: Sequence[tuple[int, str]]
                    ) -> tuple[list[tuple[int, str]], set[str]]:  # fmt: skip
        """The (ordinal, visitor) pairs whose profile is gone or has another ordinal,
        and the visitors whose profile is gone."""
        if not pairs:
            return [], set()
        with wrapped("checking profiles"):
            async with self.client.pipeline(transaction=False) as pipe:
                for _, vid in pairs:
                    pipe.getrange(self.keys.visitor(site, vid).profile, 16, 23)
                heads = await pipe.execute()
        out, missing = [], set()
        for (ordinal, vid), head in zip(pairs, heads, strict=True):
            if len(head) != 8:
                missing.add(vid)
            if len(head) != 8 or struct.unpack("<d", head)[0] != ordinal:
                out.append((ordinal, vid))
        return out, missing

    async def purge(self, site: str, shard: int, pairs: Sequence[tuple[int, str]],
                    segments: Sequence[tuple[int, str]], emit: bool, now: float
                    ) -> tuple[int, list[str]]:  # fmt: skip
        """Clean up after expired visitors of one shard (lua/purge_expired.lua):
        (visitors purged, stream ids of the exits emitted)."""
        if not pairs:
            return 0, []
        side = self._side_keys(self.keys.visitor(site, pairs[0][1]))
        keys = [self.keys.shard_key(site, shard, "ords"), self.keys.due(site, shard),
                self.keys.claimed(site, shard), self.keys.changes(site, shard),
                *(self.keys.segment_bitmap(site, shard, slot) for slot, _ in segments)]  # fmt: skip
        args: list[str | int] = [len(segments), 3 + len(side), int(emit), self.stream_max,
                                 repr(now), *(sid for _, sid in segments)]  # fmt: skip
        for ordinal, vid in pairs:
            vk = self.keys.visitor(site, vid)
            keys += [vk.profile, vk.event_ids, vk.bits, *self._side_keys(vk)]
            args += [ordinal, vid]
        raw = await self.scripts.call("purge_expired", keys, args)
        return int(raw[0]), [_text(r) for r in raw[1:]]


def _visitor_of(record: Any) -> str | None:
    """The visitor a delivery record (retry or dead letter) is about."""
    try:
        data = orjson.loads(record)
        body = data.get("body") or data.get("payload")
        payload = orjson.loads(body) if isinstance(body, str) else body
        vid = payload.get("visitor_id") if isinstance(payload, dict) else None
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    return vid if isinstance(vid, str) else None
