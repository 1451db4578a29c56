"""Campaign results: exposures per arm, decision feedback per variant, goal
conversions per arm, and each variant's lift over the holdout.

* **Exposure.** With a page view's decisions (lua/finish_visitor.lua), the visitor is
  counted once per campaign, in the arm of its first exposure: the variant it was served, or the
  holdout when it was eligible but held out (`decide.Result.held_out`). That first arm
  stays the visitor's arm for the campaign.
* **Feedback.** `impression`, `click`, `dismiss` and `conversion` events count per
  campaign × variant when their `token` is one this server signed for the same site
  and the same visitor (a forged token, another site's or another visitor's is
  ignored).
* **Goals.** An event whose type is one of a campaign's `goals`, after the visitor's
  first exposure to it, converts the visitor once for its arm — holdout included,
  which is what makes the comparison fair: the holdout never sees the content, so
  it can never report a token.
* **Summary.** Per arm: exposed visitors, feedback counts, conversions, conversion
  rate; per variant the lift over the holdout with a two-proportion z-test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segserver import decide
from segserver.catalogue.runtime import Runtime
from segserver.errors import NotFoundError
from segserver.profile.events import Event
from segserver.storage.results import GoalCandidate, Outcomes, ResultStore, TokenCount

FEEDBACK = ("impression", "click", "dismiss", "conversion")
HOLDOUT = "_holdout"  # stored arm of held-out visitors; no variant id starts with "_"
Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


# --- statistics (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class ZTest:
    """Two-proportion z-test of a variant's conversion rate against the holdout's."""

    available: bool
    reason: str | None = None
    rate: float | None = None  # the variant's
    control_rate: float | None = None  # the holdout's
    absolute: float | None = None  # rate - control_rate
    relative: float | None = None  # absolute / control_rate (None if that is 0)
    z: float | None = None
    p_value: float | None = None  # two-sided
    ci95: tuple[float, float] | None = None  # of `absolute`, unpooled standard error

    def to_json(self) -> dict[str, Any]:
        if not self.available:
            return {"available": False, "reason": self.reason}
        return {"available": True, "absolute": self.absolute, "relative": self.relative,
                "z": self.z, "p_value": self.p_value,
                "ci95": list(self.ci95) if self.ci95 else None}  # fmt: skip


def two_proportion_z(conversions: int, exposed: int, control_conversions: int,
                     control_exposed: int) -> ZTest:  # fmt: skip
    """z = (p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0)) with the pooled rate p; the
    two-sided p-value is erfc(|z| / sqrt 2). Not available when an arm is empty; z is
    0 (p-value 1) when both arms convert at the same rate of 0 or 1 (no variance)."""
    if exposed <= 0:
        return ZTest(False, "the variant has no exposed visitors")
    if control_exposed <= 0:
        return ZTest(False, "the holdout has no exposed visitors")
    if not (0 <= conversions <= exposed and 0 <= control_conversions <= control_exposed):
        return ZTest(False, "conversions must be between 0 and the exposed visitors")
    p1, p0 = conversions / exposed, control_conversions / control_exposed
    pooled = (conversions + control_conversions) / (exposed + control_exposed)
    se = math.sqrt(pooled * (1 - pooled) * (1 / exposed + 1 / control_exposed))
    z = 0.0 if se == 0 else (p1 - p0) / se
    p_value = math.erfc(abs(z) / math.sqrt(2))
    se_diff = math.sqrt(p1 * (1 - p1) / exposed + p0 * (1 - p0) / control_exposed)
    diff = p1 - p0
    return ZTest(True, None, p1, p0, diff, None if p0 == 0 else diff / p0, z, p_value,
                 (diff - Z_95 * se_diff, diff + Z_95 * se_diff))  # fmt: skip


def arm_json(counters: Mapping[str, float]) -> dict[str, Any]:
    """One arm's counters as the summary shows them."""
    exposed = int(counters.get("exposed", 0))
    conversions = int(counters.get("conversions", 0))
    impressions, clicks = int(counters.get("impression", 0)), int(counters.get("click", 0))
    return {
        "exposed": exposed, "impressions": impressions, "clicks": clicks,
        "dismisses": int(counters.get("dismiss", 0)),
        "conversion_events": int(counters.get("conversion", 0)),
        "conversions": conversions,
        "conversion_rate": conversions / exposed if exposed else None,
        "click_rate": clicks / impressions if impressions else None,
        "value": counters.get("value", 0.0),
    }  # fmt: skip


def feedback(secret: bytes, site: str, event: Event) -> TokenCount | None:
    """What a feedback event counts: its token's campaign and variant, if the token is
    ours, for this site and for the visitor that sent the event, and not expired at the
    event's time. Replays are settled in Redis (once per token and kind)."""
    token = event.properties.get("token")
    info = decide.read_token(secret, token) if isinstance(token, str) else None
    if info is None or info["site"] != site or info["visitor_id"] != event.visitor_id:
        return None
    campaign, variant, expires = info["campaign"], info["variant"], info["expires"]
    if not isinstance(campaign, str) or not isinstance(variant, str):
        return None
    if not isinstance(expires, int | float) or event.ts > expires:
        return None
    return TokenCount(campaign, variant, event.type, info["id"])


# --- recording and reading -------------------------------------------------------------


def outcomes_of(
    events: Sequence[Event], goals: Mapping[str, Sequence[str]], secret: bytes, site: str
) -> Outcomes:
    """What one visitor's stored events count: feedback with a valid token, and goal
    candidates of the campaigns (`goals`: event type → campaigns) that have the event's
    type as a goal (whether it converts — exposed before it — is settled in Redis)."""
    out = Outcomes()
    for ev in events:
        if ev.type in FEEDBACK and (count := feedback(secret, site, ev)) is not None:
            out.tokens.append(count)
        for campaign in goals.get(ev.type, ()):
            value = ev.properties.get("value")
            amount = float(value) if isinstance(value, int | float) else 0.0
            out.goals.append(GoalCandidate(campaign, ev.ts, amount))
    return out


class Results:
    """The summary the admin API shows (recording happens in storage.finish)."""

    def __init__(self, store: ResultStore, runtime: Runtime) -> None:
        self.store = store
        self.runtime = runtime

    async def summary(self, site: str, campaign: str) -> dict[str, Any]:
        """Per arm the counts and rates; per variant its lift over the holdout."""
        definition = (await self.runtime.get(site)).campaigns.get(campaign)
        if definition is None:
            raise NotFoundError(f"campaign {campaign!r} does not exist")
        counters = await self.store.counters(site, campaign)
        control = arm_json(counters.get(HOLDOUT, {}))
        ids = [v["id"] for v in definition["variants"]]
        ids += sorted(a for a in counters if a not in ids and a != HOLDOUT)  # since removed
        variants = []
        for vid in ids:
            arm = {"id": vid, **arm_json(counters.get(vid, {}))}
            if definition["holdout"] <= 0 and not control["exposed"]:
                test = ZTest(False, "the campaign has no holdout")
            else:
                test = two_proportion_z(arm["conversions"], arm["exposed"],
                                        control["conversions"], control["exposed"])  # fmt: skip
            arm["lift"] = test.to_json()
            variants.append(arm)
        return {"site": site, "campaign": campaign, "goals": list(definition["goals"]),
                "holdout_percent": definition["holdout"], "variants": variants,
                "holdout": control}  # fmt: skip
