"""Frequency caps: the visitor's periods, the counter fields of its caps hash, what a
served decision increments, and the reserve-and-redecide rule.

Decisions are made from a read of the caps hash; concurrent page views of one visitor
race, and the reservation (lua/finish_visitor.lua) settles the race atomically: a cap
is never exceeded. A placement whose winner lost its reservation is decided again as
if that campaign's caps were full (`redecide`), at most `ROUNDS` times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from segserver.decide.policy import (
    DAY,
    Campaign,
    Cap,
    Considered,
    Policy,
    Result,
    decide,
)

ROUNDS = 3  # reservation rounds before a placement whose winner keeps losing stays empty


@dataclass(frozen=True)
class Periods:
    """The visitor's current cap periods."""

    session: int
    day: int
    week: int

    @classmethod
    def at(cls, now: float, session: int) -> Periods:
        day = int(now // DAY)
        return cls(session, day, (day + 3) // 7)  # weeks start on Monday (day 0: Thursday)

    def of(self, per: str) -> int:
        """The current period of `per` (0 for lifetime)."""
        if per == "day":
            return self.day
        if per == "session":
            return self.session
        if per == "week":
            return self.week
        return 0

    @cached_property
    def suffixes(self) -> dict[str, str]:
        """per → the cap field's suffix for the current period."""
        return {per: f"|{per}|{self.of(per)}" for per in ("session", "day", "week", "lifetime")}


def cap_field(campaign: str, per: str, periods: Periods) -> str:
    """Field of the visitor's caps hash counting `campaign` ("*": every interruptive)."""
    return campaign + periods.suffixes[per]


@dataclass(frozen=True)
class Counts:
    """What the visitor was already served, from its caps hash (field → count)."""

    fields: Mapping[str, int] = field(default_factory=dict)
    periods: Periods = field(default_factory=lambda: Periods(0, 0, 0))

    def of(self, campaign: str, per: str) -> int:
        return int(self.fields.get(campaign + self.periods.suffixes[per], 0))

    def capped(self, campaign: Campaign) -> Cap | None:
        """The first of the campaign's caps already reached, or None."""
        if not self.fields:
            return None
        for cap in campaign.caps:
            if self.of(campaign.id, cap.per) >= cap.max:
                return cap
        return None


def cap_increments(
    result: Result, campaigns: Mapping[str, Campaign], periods: Periods, policy: Policy
) -> list[tuple[list[tuple[str, int]], str]]:
    """Per served campaign with caps or interruptive: the (field, max) pairs to check and
    increment atomically (max 0: no limit, only counted), and the campaign id."""
    out = []
    for decision in result.decisions.values():
        if decision is None:
            continue
        c = campaigns[decision.campaign]
        fields = [(cap_field(c.id, cap.per, periods), cap.max) for cap in c.caps]
        if c.interruptive:
            fields += [
                (cap_field("*", "session", periods), policy.interruptive_per_session or 0),
                (cap_field("*", "day", periods), policy.interruptive_per_day or 0),
            ]
        if fields:
            out.append((fields, c.id))
    return out


def as_if_full(counts: Counts, lost: set[str], campaigns: Mapping[str, Campaign]) -> Counts:
    """`counts` with every cap of the `lost` campaigns (and, for interruptive ones, the
    site-wide interruptive counters) at their limit: what a reservation that failed
    tells about the visitor's caps."""
    fields = dict(counts.fields)
    for cid in lost:
        for cap in campaigns[cid].caps:
            fields[cap_field(cid, cap.per, counts.periods)] = cap.max
        if campaigns[cid].interruptive:
            for per in ("session", "day"):
                fields[cap_field("*", per, counts.periods)] = 1 << 30
    return Counts(fields, counts.periods)


def redecide(
    visitor_id: str, campaigns: Mapping[str, Campaign], segments: frozenset[str],
    counts: Counts, policy: Policy, now: float, previous: Result, lost: set[str],
) -> Result:  # fmt: skip
    """Decide again the placements whose winner lost its reservation (with `counts`
    already marking those caps full); the other placements keep their winners, which
    are counted already."""
    redo = [p for p, dec in previous.decisions.items() if dec is not None and dec.campaign in lost]
    kept = {dec.campaign for dec in previous.decisions.values()
            if dec is not None and dec.campaign not in lost}  # fmt: skip
    others = [c for c in campaigns.values() if c.id not in lost and c.id not in kept]
    fresh = decide(visitor_id, redo, others, segments, counts, policy, now)
    merged = Result({**previous.decisions, **fresh.decisions},
                    {**previous.considered, **fresh.considered},
                    previous.held_out + fresh.held_out, previous.global_holdout)  # fmt: skip
    for p in redo:
        merged.considered[p] = [
            Considered(c, False, "frequency cap reached meanwhile")
            for c in sorted(lost)
            if campaigns[c].placement == p
        ] + fresh.considered[p]
    return merged
