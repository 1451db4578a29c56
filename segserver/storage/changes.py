"""Redis side of trigger delivery: the per-shard change streams read through one
consumer group, the retry schedule, the dead-letter list and the indexes of
subscriptions (which sites have any; which ids a site has).

Keys (besides `Keys.changes`, written by the membership script):
  `<prefix>:triggers:sites`              set: sites with at least one subscription
  `<prefix>:{<site>}:triggers`           set: the site's subscription ids
  `<prefix>:{<site>}:trigger-retries`    sorted set: delivery id → due (epoch s)
  `<prefix>:{<site>}:trigger-deliveries` hash: delivery id → JSON of a pending retry
  `<prefix>:{<site>}:trigger-dead`       list (newest first, capped): dead letters

A retry is claimed with `ZADD XX INCR` (no Lua, one slot): the claimer adds
`now + lease - due` to the score it read and wins only if the answer is exactly
`now + lease`; a concurrent claimer gets a sum that is larger by at least the
lease, and a finished delivery (member gone) answers nil. A crashed claimer's
delivery becomes due again when its lease ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from segserver.errors import StorageError
from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys

GROUP = "triggers"


@dataclass(frozen=True, slots=True)
class Change:
    """One stream entry: a visitor entered or exited a segment."""

    shard: int
    entry: str  # the stream entry id
    visitor: str
    segment: str
    change: str  # "entered" | "exited"
    at: float  # epoch seconds
    cause: str  # "event" | "expiry" | "recompute" | "edit"


def parse_change(shard: int, entry: str, fields: dict[str, str]) -> Change | None:
    """The change of a stream entry, or None if a field is missing or malformed."""
    try:
        return Change(
            shard,
            entry,
            fields["v"],
            fields["s"],
            fields["c"],
            float(fields["t"]),
            fields.get("why", ""),
        )
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Read:
    """Entries of one stream handed to this consumer: new ones and taken-over ones."""

    shard: int
    entries: list[Change]
    malformed: list[str]  # entry ids to acknowledge without delivering


class ChangeStore:
    """All Redis calls of trigger delivery. `client` must decode responses (str)."""

    def __init__(self, client: Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.sites_key = f"{keys.prefix}:triggers:sites"
        # XAUTOCLAIM cursor per stream, so a long pending list is walked, not rescanned
        self.cursors: dict[str, str] = {}

    def _site_key(self, site: str, name: str) -> str:
        return f"{self.keys.prefix}:{{{site}}}:{name}"

    def site_key(self, site: str, name: str) -> str:
        """A site-wide key of trigger delivery (`trigger-dead`, `trigger-retries`,
        `trigger-deliveries`): erasure scrubs them."""
        return self._site_key(site, name)

    # -- subscription indexes -------------------------------------------------

    async def add_subscription(self, site: str, sub_id: str) -> bool:
        """Index `sub_id`; True if the site had no subscription before."""
        with wrapped("indexing a trigger"):
            await self.client.sadd(self._site_key(site, "triggers"), sub_id)
            return bool(await self.client.sadd(self.sites_key, site))

    async def remove_subscription(self, site: str, sub_id: str) -> None:
        key = self._site_key(site, "triggers")
        with wrapped("unindexing a trigger"):
            await self.client.srem(key, sub_id)
            if not await self.client.scard(key):
                await self.client.srem(self.sites_key, site)

    async def subscription_ids(self, site: str) -> list[str]:
        with wrapped("reading trigger ids"):
            return sorted(await self.client.smembers(self._site_key(site, "triggers")))

    async def sites(self) -> list[str]:
        with wrapped("reading trigger sites"):
            return sorted(await self.client.smembers(self.sites_key))

    # -- change streams ---------------------------------------------------------

    async def start_groups(self, site: str, skip_backlog: bool) -> None:
        """Create the consumer group on every shard stream, reading from now on.

        With `skip_backlog` (the site's first subscription), an existing group is moved
        to the end too: changes from before anyone subscribed are not delivered."""
        with wrapped("creating trigger consumer groups"):
            for shard in range(self.keys.shards):
                key = self.keys.changes(site, shard)
                if not await self._create_group(key, "$") and skip_backlog:
                    await self.client.xgroup_setid(key, GROUP, "$")

    async def _create_group(self, key: str, start: str) -> bool:
        """XGROUP CREATE … MKSTREAM; False if the group exists."""
        try:
            await self.client.xgroup_create(key, GROUP, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def read(self, site: str, consumer: str, count: int, lease_ms: int) -> list[Read]:
        """Up to `count` new entries per shard stream, plus entries another consumer
        has held pending longer than `lease_ms` (taken over with XAUTOCLAIM)."""
        keys = [self.keys.changes(site, shard) for shard in range(self.keys.shards)]
        with wrapped("reading change streams"):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xautoclaim(
                        key, GROUP, consumer, lease_ms, self.cursors.get(key, "0-0"), count=count
                    )
                    pipe.xreadgroup(GROUP, consumer, {key: ">"}, count=count)
                results = await pipe.execute(raise_on_error=False)
        out = []
        for shard, key in enumerate(keys):
            claimed, fresh = results[2 * shard], results[2 * shard + 1]
            if _is_nogroup(claimed) or _is_nogroup(fresh):
                # The stream was deleted (and recreated by the producer) under us: a new
                # group from its first entry loses nothing written since.
                await self._recreate_group(key)
                continue
            for result in (claimed, fresh):
                if isinstance(result, Exception):
                    raise StorageError(f"reading change stream {key} failed: {result}")
            self.cursors[key] = claimed[0]
            pairs = list(claimed[1]) + _stream_entries(fresh)
            read = Read(shard, [], [])
            for entry, fields in pairs:
                change = parse_change(shard, entry, fields or {})
                if change is None:
                    read.malformed.append(entry)
                else:
                    read.entries.append(change)
            if pairs:
                out.append(read)
        return out

    async def _recreate_group(self, key: str) -> None:
        with wrapped(f"recreating consumer group on {key}"):
            await self._create_group(key, "0")
        self.cursors.pop(key, None)

    async def ack(self, site: str, shard: int, entries: Sequence[str],
                  forget: Sequence[str] = ()) -> None:  # fmt: skip
        """Acknowledge `entries`; `forget` (erasure and expiry exits, once handed to
        every subscription) are also deleted from the stream: they name a visitor who
        must leave no trace."""
        if not entries:
            return
        with wrapped("acknowledging changes"):
            await self.client.xack(self.keys.changes(site, shard), GROUP, *entries)
            if forget:
                await self.client.xdel(self.keys.changes(site, shard), *forget)

    # -- retry schedule -----------------------------------------------------------

    async def schedule(self, site: str, delivery_id: str, record: str, due: float) -> None:
        """Keep `record` and make it due at `due` (the record first: a crash between
        the two leaves an unscheduled record, never a schedule without one)."""
        with wrapped("scheduling a trigger retry"):
            await self.client.hset(self._site_key(site, "trigger-deliveries"), delivery_id, record)
            await self.client.zadd(self._site_key(site, "trigger-retries"), {delivery_id: due})

    async def claim_due(
        self, site: str, now: float, lease: float, count: int
    ) -> list[tuple[str, str]]:
        """Claim up to `count` due retries for `lease` seconds: [(delivery id, record)]."""
        zkey = self._site_key(site, "trigger-retries")
        with wrapped("claiming trigger retries"):
            due = await self.client.zrangebyscore(
                zkey, "-inf", now, start=0, num=count, withscores=True
            )
            claimed = []
            for delivery_id, score in due:
                until = now + lease
                got = await self.client.zadd(zkey, {delivery_id: until - score}, xx=True, incr=True)
                if got is not None and abs(float(got) - until) < lease / 2:
                    claimed.append(delivery_id)
            if not claimed:
                return []
            records = await self.client.hmget(self._site_key(site, "trigger-deliveries"), claimed)
        out = []
        for delivery_id, record in zip(claimed, records, strict=True):
            if record is None:  # finished by a claimer whose lease had run out
                await self.finish(site, delivery_id)
            else:
                out.append((delivery_id, record))
        return out

    async def finish(self, site: str, delivery_id: str) -> None:
        """Forget a retry (delivered, dead-lettered or dropped)."""
        with wrapped("finishing a trigger retry"):
            await self.client.zrem(self._site_key(site, "trigger-retries"), delivery_id)
            await self.client.hdel(self._site_key(site, "trigger-deliveries"), delivery_id)

    async def retries(self, site: str) -> int:
        with wrapped("counting trigger retries"):
            return int(await self.client.zcard(self._site_key(site, "trigger-retries")))

    # -- delivery counters (per subscription; no visitor ids) -------------------------

    async def count_outcome(self, site: str, sub_id: str, ok: bool, now: float) -> None:
        """Count one delivery attempt of a subscription: `<sub>|delivered` or
        `<sub>|failed`, and the time and outcome of its latest attempt."""
        key = self._site_key(site, "trigger-stats")
        outcome = "delivered" if ok else "failed"
        with wrapped("counting a trigger delivery"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(key, f"{sub_id}|{outcome}", 1)
            pipe.hset(key, mapping={f"{sub_id}|last_at": repr(now), f"{sub_id}|last": outcome})
            await pipe.execute()

    async def outcomes(self, site: str) -> dict[str, dict[str, Any]]:
        """Per subscription: delivered and failed attempts, the latest attempt's time
        and outcome (`last_at`, `last`: delivered | failed), as count_outcome kept them."""
        with wrapped("reading trigger delivery counters"):
            raw = await self.client.hgetall(self._site_key(site, "trigger-stats"))
        out: dict[str, dict[str, Any]] = {}
        for name, value in raw.items():
            sub_id, _, field = name.rpartition("|")
            entry = out.setdefault(sub_id, {"delivered": 0, "failed": 0, "last_at": None,
                                            "last": None})  # fmt: skip
            if field in ("delivered", "failed"):
                entry[field] = int(value)
            elif field == "last_at":
                entry[field] = float(value)
            elif field == "last":
                entry[field] = value
        return out

    async def forget_outcomes(self, site: str, sub_id: str) -> None:
        """Drop a deleted subscription's counters."""
        fields = [f"{sub_id}|{f}" for f in ("delivered", "failed", "last_at", "last")]
        with wrapped("dropping trigger delivery counters"):
            await self.client.hdel(self._site_key(site, "trigger-stats"), *fields)

    # -- dead letters ---------------------------------------------------------------

    async def push_dead(self, site: str, record: str, cap: int) -> None:
        key = self._site_key(site, "trigger-dead")
        with wrapped("writing a dead letter"):
            await self.client.lpush(key, record)
            await self.client.ltrim(key, 0, cap - 1)

    async def dead(self, site: str) -> list[str]:
        """Every dead letter, newest first (the list is capped)."""
        with wrapped("reading dead letters"):
            return list(await self.client.lrange(self._site_key(site, "trigger-dead"), 0, -1))

    async def take_dead(self, site: str, record: str) -> bool:
        """Remove one dead letter; True for the one caller that removed it."""
        with wrapped("removing a dead letter"):
            return bool(await self.client.lrem(self._site_key(site, "trigger-dead"), 1, record))


def _is_nogroup(result: Any) -> bool:
    return isinstance(result, ResponseError) and "NOGROUP" in str(result)


def _stream_entries(result: Any) -> list[Any]:
    """Entries of a one-stream XREADGROUP answer (RESP2 list or RESP3 dict)."""
    if not result:
        return []
    if isinstance(result, dict):
        return [pair for entries in result.values() for pair in entries[0]]
    return list(result[0][1])
