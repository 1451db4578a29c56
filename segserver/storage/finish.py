"""The finishing write of one visitor: membership commit, cap reservation with
exposures, feedback and goal outcomes, recommendation signals — one call of
lua/finish_visitor.lua (see its header), in the visitor's shard slot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from segserver.storage.keys import Keys
from segserver.storage.results import Outcomes
from segserver.storage.scripts import Scripts

COMMITTED, SKIPPED, STALE_READ, NOT_ASKED = 1, 0, -1, 2


@dataclass(frozen=True, slots=True)
class MembershipWrite:
    """One evaluation to store, diffed by the caller against `expected_bits` (the
    stored bitmap as the first round trip read it)."""

    cause: str
    ordinal: int
    version: float  # profile version evaluated
    time: float  # evaluation instant
    next_change: float  # math.inf: nothing time-based can flip
    expected_bits: bytes
    flips: Sequence[tuple[int, int, str]]  # (slot, new bit, segment id) that differ


@dataclass(frozen=True, slots=True)
class Serve:
    """A served (or held-out) campaign: its arm, and the cap fields (field, max; max 0
    = only counted) checked and incremented together."""

    campaign: str
    arm: str
    fields: Sequence[tuple[str, int]] = ()


@dataclass
class Finish:
    membership: MembershipWrite | None = None
    outcomes: Outcomes = field(default_factory=Outcomes)
    served: Sequence[Serve] = ()
    periods: tuple[int, int, int] = (0, 0, 0)  # the visitor's session, day, week
    recent: Sequence[str] = ()  # product ids viewed, oldest first
    # (segment or None, "v" | "b", day) → product → amount
    popularity: Mapping[tuple[str | None, str, int], Mapping[str, float]] = field(
        default_factory=dict
    )

    def is_empty(self) -> bool:
        o = self.outcomes
        return (self.membership is None and not o.tokens and not o.goals and not self.served
                and not self.recent and not self.popularity)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Finished:
    membership: int  # COMMITTED, SKIPPED, STALE_READ or NOT_ASKED
    conversions: int
    served: list[bool]  # per Finish.served: reserved (and exposed) or a cap was reached


@dataclass
class FinishStore:
    scripts: Scripts
    keys: Keys
    stream_max: int
    history_len: int
    ttl_seconds: int  # visitor keys (0: forever)
    caps_ttl_seconds: int
    recent_length: int
    popularity_days: int = 8  # a daily set lives this long after its day began
    feedback_ttl_seconds: int = 30 * 86400  # tokens counted are remembered this long

    def call(self, site: str, visitor_id: str, plan: Finish, now: float
             ) -> tuple[list[str], list[str | bytes | int]]:  # fmt: skip
        """KEYS and ARGV of lua/finish_visitor.lua for `plan`."""
        k = self.keys
        vk = k.visitor(site, visitor_id)
        shard = vk.shard
        keys = [k.changes(site, shard), k.due(site, shard), k.claimed(site, shard),
                vk.membership, vk.bits, vk.history, vk.caps, vk.arms, vk.recent,
                vk.feedback]  # fmt: skip
        index: dict[str, int] = {}

        def key_of(key: str) -> int:
            at = index.get(key)
            if at is None:
                keys.append(key)
                at = index[key] = len(keys)  # Lua indexes KEYS from 1
            return at

        args: list[str | bytes | int] = [repr(now), self.ttl_seconds]
        m = plan.membership
        if m is None:
            args.append(0)
        else:
            nxt = "inf" if math.isinf(m.next_change) else repr(m.next_change)
            args += [1, m.cause, self.stream_max, self.history_len, visitor_id, m.ordinal,
                     repr(m.version), repr(m.time), nxt, m.expected_bits, len(m.flips)]  # fmt: skip
            for slot, bit, segment in m.flips:
                args += [key_of(k.segment_bitmap(site, shard, slot)), slot, bit, segment]
        o = plan.outcomes
        args += [len(o.tokens), self.feedback_ttl_seconds]
        for t in o.tokens:
            args += [key_of(k.results(site, shard, t.campaign)), t.variant, t.kind, t.token]
        args.append(len(o.goals))
        for g in o.goals:
            args += [key_of(k.results(site, shard, g.campaign)), g.campaign, repr(g.ts),
                     repr(g.value)]  # fmt: skip
        args += [self.caps_ttl_seconds, *plan.periods, len(plan.served)]
        for s in plan.served:
            args += [s.campaign, s.arm, key_of(k.results(site, shard, s.campaign)), len(s.fields)]
            for name, limit in s.fields:
                args += [name, limit]
        args += [self.recent_length, len(plan.recent), *plan.recent]
        entries = [(scope, pid, amount) for scope, products in plan.popularity.items()
                   for pid, amount in products.items()]  # fmt: skip
        args.append(len(entries))
        for (scope, kind, day), pid, amount in entries:
            lives = max(1, int((day + self.popularity_days) * 86400 - now))
            args += [key_of(k.popularity(site, shard, scope, kind, day)), pid, repr(amount),
                     lives]  # fmt: skip
        return keys, args

    async def finish(self, site: str, visitor_id: str, plan: Finish, now: float) -> Finished:
        keys, args = self.call(site, visitor_id, plan, now)
        raw = await self.scripts.call("finish_visitor", keys, args)
        return Finished(int(raw[0]), int(raw[1]), [bool(int(r)) for r in raw[2:]])
