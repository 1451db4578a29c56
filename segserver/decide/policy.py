"""Priority resolution: which campaign each placement shows to one visitor now.

Pure: no I/O, time is a parameter. For every placement asked for, the winner is
the eligible campaign with the highest priority (ties by id). Eligible: active, in
schedule, audience matched (include any/all, exclude none), under every frequency
cap, the site's interruptive limits not reached, its exclusive group not used by a
higher-priority winner of this answer, and the visitor not in its holdout. A visitor
in a campaign's holdout does not see it; the next candidate may take the placement,
and the holdout exposure is reported (`Result.held_out`) so results can compare the
arms. A visitor in the site's global holdout sees no campaign at all.

Variant and holdout assignment use a versioned, salted hash of the visitor id
(`bucket`), so they are sticky and reproducible offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from segserver.decide.buckets import BUCKETS, bucket

if TYPE_CHECKING:
    from segserver.decide.caps import Counts

DAY = 86400


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    content: str
    weight: float


@dataclass(frozen=True, slots=True)
class Cap:
    per: str  # session | day | week | lifetime
    max: int


@dataclass(frozen=True)
class Campaign:
    id: str
    placement: str
    priority: int
    variants: tuple[Variant, ...]
    status: str = "active"
    include: tuple[str, ...] = ()
    match: str = "any"
    exclude: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None
    holdout: float = 0.0  # percent
    group: str | None = None
    caps: tuple[Cap, ...] = ()
    goals: tuple[str, ...] = ()
    interruptive: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], interruptive: bool) -> Campaign:
        aud, sched = data["audience"], data["schedule"]
        return cls(
            data["id"], data["placement"], data["priority"],
            tuple(Variant(v["id"], v["content"], v["weight"]) for v in data["variants"]),
            data["status"], tuple(aud["include"]), aud["match"], tuple(aud["exclude"]),
            sched["start"], sched["end"], data["holdout"], data["group"],
            tuple(Cap(c["per"], c["max"]) for c in data["caps"]), tuple(data["goals"]),
            interruptive,
        )  # fmt: skip

    # Derived once per campaign (a catalogue's campaigns live as long as it is cached):
    # the page view's decision loop only reads them.
    @cached_property
    def order(self) -> tuple[int, str]:
        """Priority order: highest priority first, ties by id."""
        return (-self.priority, self.id)

    @cached_property
    def include_set(self) -> frozenset[str]:
        return frozenset(self.include)

    @cached_property
    def exclude_set(self) -> frozenset[str]:
        return frozenset(self.exclude)

    @cached_property
    def holdout_buckets(self) -> float:
        """Buckets (of BUCKETS) in the campaign's holdout."""
        return self.holdout * BUCKETS / 100

    @cached_property
    def variant_salt(self) -> str:
        return f"variant:{self.id}"

    @cached_property
    def holdout_salt(self) -> str:
        return f"holdout:{self.id}"

    @cached_property
    def cumulative(self) -> tuple[float, tuple[float, ...]]:
        """Total weight and the running sums of the variants' weights."""
        running, sums = 0.0, []
        for v in self.variants:
            running += v.weight
            sums.append(running)
        return running, tuple(sums)


@dataclass(frozen=True)
class Policy:
    interruptive_per_session: int | None = None
    interruptive_per_day: int | None = None
    holdout: float = 0.0  # percent of visitors who see no campaign

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Policy:
        data = data or {}
        return cls(data.get("interruptive_per_session"), data.get("interruptive_per_day"),
                   float(data.get("holdout", 0)))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Decision:
    placement: str
    campaign: str
    variant: str
    content: str


@dataclass(frozen=True, slots=True)
class Considered:
    campaign: str
    won: bool
    reason: str  # why it lost (or "highest priority eligible")


@dataclass
class Result:
    decisions: dict[str, Decision | None]
    considered: dict[str, list[Considered]]
    held_out: list[tuple[str, str]]  # (campaign, placement) the visitor is a control for
    global_holdout: bool = False


def variant_of(campaign: Campaign, visitor_id: str) -> Variant:
    """Weighted, sticky: the visitor's bucket against the cumulative weights."""
    total, sums = campaign.cumulative
    point = (bucket(visitor_id, campaign.variant_salt) + 0.5) / BUCKETS * total
    for variant, running in zip(campaign.variants, sums, strict=True):
        if point < running:
            return variant
    return [v for v in campaign.variants if v.weight > 0][-1]


def in_holdout(campaign: Campaign, visitor_id: str) -> bool:
    # no hash for the (usual) campaign without a holdout: 0 < 0 is false either way
    return campaign.holdout > 0 and bucket(visitor_id, campaign.holdout_salt) < (
        campaign.holdout_buckets
    )


def in_global_holdout(policy: Policy, visitor_id: str) -> bool:
    return policy.holdout > 0 and bucket(visitor_id, "holdout:*") < policy.holdout * BUCKETS / 100


def _audience(c: Campaign, segments: frozenset[str]) -> bool:
    if c.exclude and not c.exclude_set.isdisjoint(segments):
        return False
    if not c.include:
        return True
    if c.match == "all":
        return c.include_set <= segments
    return not c.include_set.isdisjoint(segments)


def decide(
    visitor_id: str, placements: Sequence[str], campaigns: Sequence[Campaign],
    segments: frozenset[str], counts: Counts, policy: Policy, now: float,
    *, explain: bool = True,
) -> Result:  # fmt: skip
    """Each placement's winner. `campaigns` in any order (a caller may pass them already
    sorted by `Campaign.order`: sorting is then almost free). Without `explain`, losers
    are not recorded in `Result.considered` and the walk stops once every placement
    has its winner (what comes after could neither win nor be held out)."""
    wanted = list(dict.fromkeys(placements))
    result = Result(dict.fromkeys(wanted), {p: [] for p in wanted}, [])
    decisions = result.decisions
    candidates = sorted((c for c in campaigns if c.placement in decisions),
                        key=lambda c: c.order)  # fmt: skip
    if in_global_holdout(policy, visitor_id):
        result.global_holdout = True
        if explain:
            for c in candidates:
                result.considered[c.placement].append(Considered(c.id, False, "global holdout"))
        return result
    groups: set[str] = set()
    interruptive = 0
    open_placements = len(wanted)
    considered = result.considered

    for c in candidates:
        reason = None
        if c.status != "active":
            reason = f"status {c.status}"
        elif (c.start is not None and now < c.start) or (c.end is not None and now >= c.end):
            reason = "outside its schedule"
        elif not _audience(c, segments):
            reason = "audience not matched"
        elif (winner := decisions[c.placement]) is not None:
            if not explain:
                continue
            reason = f"lower priority than {winner.campaign}"
        elif c.group is not None and c.group in groups:
            reason = f"exclusive group {c.group} already used"
        elif c.caps and (capped := counts.capped(c)) is not None:
            reason = f"frequency cap {capped.max} per {capped.per} reached"
        elif c.interruptive and _over_policy(policy, counts, interruptive):
            reason = "site-wide interruptive limit reached"
        elif in_holdout(c, visitor_id):
            reason = "visitor in the campaign's holdout"
            result.held_out.append((c.id, c.placement))
        else:
            variant = variant_of(c, visitor_id)
            decisions[c.placement] = Decision(c.placement, c.id, variant.id, variant.content)
            if explain:
                considered[c.placement].append(Considered(c.id, True, "won"))
            if c.group is not None:
                groups.add(c.group)
            interruptive += c.interruptive
            open_placements -= 1
            if open_placements == 0 and not explain:
                break
            continue
        if explain:
            considered[c.placement].append(Considered(c.id, False, reason))
    return result


def _over_policy(policy: Policy, counts: Counts, served_now: int) -> bool:
    limits = (("session", policy.interruptive_per_session), ("day", policy.interruptive_per_day))
    return any(limit is not None and counts.of("*", per) + served_now >= limit
               for per, limit in limits)  # fmt: skip
