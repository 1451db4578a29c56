"""Campaign results in Redis: each visitor's arm per campaign and the counters.

Keys (every one in the visitor's shard, `{<site>.<shard>}`, so one script call per
visitor runs in one Redis Cluster slot):

* `arms:<visitor>` hash: `<campaign>` → arm (variant id or "holdout") of the first
  exposure, `<campaign>|t` → its time, `<campaign>|c` → 1 once a goal converted;
  lives as long as the visitor's profile.
* `res:<campaign>` hash per shard: `<arm>|exposed`, `<arm>|conversions`, `<arm>|value`
  (written by lua/record_exposures.lua and lua/record_outcomes.lua) and
  `<variant>|impression|click|dismiss|conversion` (token events). A campaign's results
  are the sum over shards, read with one pipeline. Counters do not expire: they are
  a few fields per shard and campaign.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts


@dataclass(frozen=True, slots=True)
class TokenCount:
    """One impression / click / dismiss / conversion event carrying a valid token."""

    campaign: str
    variant: str
    kind: str


@dataclass(frozen=True, slots=True)
class GoalCandidate:
    """An event whose type is a goal of `campaign`: converts if the visitor was exposed."""

    campaign: str
    ts: float
    value: float = 0.0


@dataclass
class Outcomes:
    """What one visitor's events add to the results."""

    tokens: list[TokenCount] = field(default_factory=list)
    goals: list[GoalCandidate] = field(default_factory=list)


@dataclass
class ResultStore:
    client: Client
    scripts: Scripts
    keys: Keys
    ttl_seconds: int = 400 * 86400  # of a visitor's arms (0: forever)

    def _arms(self, site: str, visitor_id: str) -> tuple[int, str]:
        shard = self.keys.visitor(site, visitor_id).shard
        return shard, self.keys.shard_key(site, shard, f"arms:{visitor_id}")

    def _counters(self, site: str, shard: int, campaign: str) -> str:
        return self.keys.shard_key(site, shard, f"res:{campaign}")

    def visitor_keys(self, site: str, visitor_id: str) -> list[str]:
        """The per-visitor key results keep (for deleting a visitor)."""
        return [self._arms(site, visitor_id)[1]]

    async def expose(
        self, site: str, visitor_id: str, arms: Sequence[tuple[str, str]], now: float
    ) -> list[bool]:
        """Store the visitor's (campaign, arm) pairs not seen before and count them;
        True where this was the visitor's first exposure to the campaign."""
        if not arms:
            return []
        shard, arms_key = self._arms(site, visitor_id)
        keys = [arms_key, *(self._counters(site, shard, c) for c, _ in arms)]
        args: list[str | int] = [repr(now), self.ttl_seconds]
        for campaign, arm in arms:
            args += [campaign, arm]
        result = await self.scripts.call("record_exposures", keys, args)
        return [bool(r) for r in result]

    async def record(self, site: str, visitor_id: str, outcomes: Outcomes) -> int:
        """Count the visitor's token events and goal conversions (one script call);
        returns the conversions counted."""
        if not outcomes.tokens and not outcomes.goals:
            return 0
        shard, arms_key = self._arms(site, visitor_id)
        index: dict[str, int] = {}
        keys = [arms_key]

        def key_of(campaign: str) -> int:
            if campaign not in index:
                keys.append(self._counters(site, shard, campaign))
                index[campaign] = len(keys)  # Lua indexes KEYS from 1
            return index[campaign]

        args: list[str | int] = [len(outcomes.tokens)]
        for t in outcomes.tokens:
            args += [key_of(t.campaign), t.variant, t.kind]
        args.append(len(outcomes.goals))
        for g in outcomes.goals:
            args += [key_of(g.campaign), g.campaign, repr(g.ts), repr(g.value)]
        return int(await self.scripts.call("record_outcomes", keys, args))

    async def arms_of(self, site: str, visitor_id: str) -> dict[str, str]:
        """campaign → the visitor's arm (for tests and support)."""
        with wrapped("reading a visitor's arms"):
            raw = await self.client.hgetall(self._arms(site, visitor_id)[1])
        return {_text(k): _text(v) for k, v in raw.items() if b"|" not in k}

    async def counters(self, site: str, campaign: str) -> dict[str, dict[str, float]]:
        """arm or variant → counter → value, summed over shards (one pipeline)."""
        with wrapped(f"reading the results of {campaign}"):
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.keys.shards):
                    pipe.hgetall(self._counters(site, shard, campaign))
                raw: list[dict[bytes, bytes]] = await pipe.execute()
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for fields in raw:
            for name, value in fields.items():
                arm, _, counter = _text(name).rpartition("|")
                out[arm][counter] += float(value)
        return {arm: dict(values) for arm, values in out.items()}


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
