"""Campaign results in Redis: each visitor's arm per campaign and the counters.

Keys (every one in the visitor's shard, `{<site>.<shard>}`, so one script call per
visitor runs in one Redis Cluster slot):

* `arms:<visitor>` hash: `<campaign>` → arm (variant id or "_holdout") of the first
  exposure, `<campaign>|t` → its time, `<campaign>|c` → 1 once a goal converted;
  lives as long as the visitor's profile.
* `res:<campaign>` hash per shard: `<arm>|exposed`, `<arm>|conversions`, `<arm>|value`
  and `<variant>|impression|click|dismiss|conversion` (token events). A campaign's results
  are the sum over shards, read with one pipeline. Counters do not expire: they are
  a few fields per shard and campaign.

All of them are written by lua/finish_visitor.lua (storage.finish), in the same call as
the visitor's membership commit and cap reservation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys


@dataclass(frozen=True, slots=True)
class TokenCount:
    """One impression / click / dismiss / conversion event carrying a valid token."""

    campaign: str
    variant: str
    kind: str
    token: str = ""  # the token's id: counted once per token and kind


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
    """Reads of the counters; they are written by lua/finish_visitor.lua (storage.finish)."""

    client: Client
    keys: Keys

    async def arms_of(self, site: str, visitor_id: str) -> dict[str, str]:
        """campaign → the visitor's arm (for tests and support)."""
        with wrapped("reading a visitor's arms"):
            raw = await self.client.hgetall(self.keys.visitor(site, visitor_id).arms)
        return {_text(k): _text(v) for k, v in raw.items() if b"|" not in k}

    async def counters(self, site: str, campaign: str) -> dict[str, dict[str, float]]:
        """arm or variant → counter → value, summed over shards (one pipeline)."""
        with wrapped(f"reading the results of {campaign}"):
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.keys.shards):
                    pipe.hgetall(self.keys.results(site, shard, campaign))
                raw: list[dict[bytes, bytes]] = await pipe.execute()
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for fields in raw:
            for name, value in fields.items():
                arm, _, counter = _text(name).rpartition("|")
                out[arm][counter] += float(value)
        return {arm: dict(values) for arm, values in out.items()}


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
