"""Campaign results on a real redis-server: exposures once per visitor and campaign,
feedback by token, goal conversions for the visitor's arm (holdout included), the
summary with its z-test, and the admin route."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from segserver import decide
from segserver.config import Settings
from segserver.errors import NotFoundError
from segserver.http import create_app, results_routes
from segserver.profile.events import Event
from segserver.results import HOLDOUT, Results, outcomes_of, two_proportion_z
from segserver.storage.finish import Finish, Serve
from segserver.storage.results import ResultStore
from segserver.wiring import Services
from tests.conftest import Clock, admin_headers

SECRET = b"s" * 32
RESCUE = {
    "id": "rescue",
    "placement": "home_popup",
    "status": "active",
    "priority": 5,
    "variants": [{"id": "a", "content": "c1"}, {"id": "b", "content": "c2"}],
    "holdout": 10,
    "goals": ["purchase", "signup"],
}
BANNER = {
    "id": "banner",
    "placement": "hero",
    "status": "active",
    "variants": [{"id": "a", "content": "c3"}],
    "goals": ["purchase"],
}


def store_of(services: Services) -> ResultStore:
    return ResultStore(services.clients.raw, services.keys)


class Recorded(Results):
    """The summary, plus recording the way the request path does: each visitor's served
    decisions and stored events in its finishing write (lua/finish_visitor.lua)."""

    def __init__(self, services: Services) -> None:
        super().__init__(store_of(services), services.runtime)
        self.finish = services.pageviews.after.finish_store

    async def record_decisions(
        self, site: str, visitor_id: str, served: Sequence[decide.Decision],
        held_out: Sequence[tuple[str, str]], now: float,
    ) -> None:  # fmt: skip
        serves = [Serve(d.campaign, d.variant) for d in served]
        serves += [Serve(c, HOLDOUT) for c, _ in held_out]
        await self.finish.finish(site, visitor_id, Finish(served=serves), now)

    async def record_events(
        self, site: str, events: Sequence[Event], now: float, secret: bytes
    ) -> None:
        goals = (await self.runtime.get(site)).goals
        by_visitor: dict[str, list[Event]] = defaultdict(list)
        for ev in events:
            by_visitor[ev.visitor_id].append(ev)
        for vid, evs in by_visitor.items():
            outcomes = outcomes_of(evs, goals, secret, site)
            await self.finish.finish(site, vid, Finish(outcomes=outcomes), now)


@pytest_asyncio.fixture
async def results(services: Services) -> Recorded:
    for site in ("shop", "other"):
        await services.sites.create({"id": site, "name": site})
        for campaign in (RESCUE, BANNER):
            await services.items["campaign"].create(site, campaign)
    return Recorded(services)


def served(campaign: str, variant: str, placement: str = "home_popup") -> decide.Decision:
    return decide.Decision(placement, campaign, variant, "c1")


def token(
    vid: str,
    campaign: str = "rescue",
    variant: str = "a",
    site: str = "shop",
    secret: bytes = SECRET,
) -> str:
    return decide.make_token(
        secret, site, served(campaign, variant), vid, 1_790_000_000.0
    )  # Clock() time: not expired


def event(vid: str, etype: str, ts: float, **props: Any) -> Event:
    return Event(vid, etype, ts, None, props)


async def test_exposure_counted_once_per_visitor_and_campaign(
    results: Recorded, services: Services, clock: Clock
) -> None:
    for _ in range(3):
        await results.record_decisions("shop", "ann", [served("rescue", "a")], [], clock())
        clock.advance(60)
    # another process (no in-memory memo) counts nothing twice either
    fresh = Recorded(services)
    await fresh.record_decisions("shop", "ann", [served("rescue", "a")], [], clock())
    await results.record_decisions("shop", "bob", [served("rescue", "b")], [], clock())
    await results.record_decisions("shop", "cid", [], [("rescue", "home_popup")], clock())
    await results.record_decisions(
        "shop", "dan", [served("banner", "a", "hero")], [("rescue", "home_popup")], clock()
    )
    summary = await results.summary("shop", "rescue")
    assert [(v["id"], v["exposed"]) for v in summary["variants"]] == [("a", 1), ("b", 1)]
    assert summary["holdout"]["exposed"] == 2
    assert (await results.summary("shop", "banner"))["variants"][0]["exposed"] == 1


async def test_the_first_arm_stays_the_visitors_arm(
    results: Recorded, services: Services, clock: Clock
) -> None:
    await results.record_decisions("shop", "ann", [], [("rescue", "home_popup")], clock())
    fresh = Recorded(services)
    clock.advance(60)
    await fresh.record_decisions("shop", "ann", [served("rescue", "b")], [], clock())
    assert await store_of(services).arms_of("shop", "ann") == {"rescue": HOLDOUT}
    summary = await results.summary("shop", "rescue")
    assert summary["holdout"]["exposed"] == 1
    assert all(v["exposed"] == 0 for v in summary["variants"])


async def test_holdout_conversions_are_attributed_once(results: Recorded, clock: Clock) -> None:
    t0 = clock()
    await results.record_decisions("shop", "hal", [], [("rescue", "home_popup")], t0)
    await results.record_decisions("shop", "vic", [served("rescue", "a")], [], t0)
    # events of the page view that exposed them (same instant) happened before it
    await results.record_events("shop", [event("hal", "purchase", t0, value=10.0)], t0, SECRET)
    summary = await results.summary("shop", "rescue")
    assert summary["holdout"]["conversions"] == 0
    clock.advance(3600)
    later = [
        event("hal", "purchase", clock(), value=30.0),
        event("vic", "signup", clock()),
        event("hal", "purchase", clock(), value=99.0),  # converted already: once
        event("vic", "page_view", clock()),
    ]
    await results.record_events("shop", later, clock(), SECRET)
    clock.advance(60)
    await results.record_events(
        "shop", [event("vic", "purchase", clock(), value=5.0)], clock(), SECRET
    )
    summary = await results.summary("shop", "rescue")
    assert summary["holdout"]["conversions"] == 1
    assert summary["holdout"]["value"] == 30.0
    assert summary["holdout"]["conversion_rate"] == 1.0
    a = summary["variants"][0]
    assert (a["id"], a["conversions"], a["value"]) == ("a", 1, 0.0)  # signup carries no value
    # banner: purchase is its goal, but nobody was exposed to it
    assert (await results.summary("shop", "banner"))["variants"][0]["conversions"] == 0


async def test_goal_before_any_exposure_does_not_count(results: Recorded, clock: Clock) -> None:
    await results.record_events(
        "shop", [event("eve", "purchase", clock(), value=1.0)], clock(), SECRET
    )
    clock.advance(10)
    await results.record_decisions("shop", "eve", [served("rescue", "a")], [], clock())
    summary = await results.summary("shop", "rescue")
    assert summary["variants"][0]["exposed"] == 1
    assert summary["variants"][0]["conversions"] == 0


async def test_feedback_counts_per_variant_and_ignores_bad_tokens(
    results: Recorded, clock: Clock
) -> None:
    ann, bob = token("ann", variant="a"), token("bob", variant="b")
    events = [
        event("ann", "impression", clock(), token=ann),
        event("ann", "impression", clock(), token=ann),  # a replay: counted once
        event("ann", "click", clock(), token=ann),
        event("ann", "conversion", clock(), token=ann, value=3.0),
        event("bob", "impression", clock(), token=bob),
        event("bob", "dismiss", clock(), token=bob),
        # ignored: forged, signed with another secret, another site's, another visitor's
        event("ann", "click", clock(), token=ann[:-2] + ("AA" if ann[-2:] != "AA" else "BB")),
        event("ann", "click", clock(), token=token("ann", secret=b"x" * 32)),
        event("ann", "click", clock(), token=token("ann", site="other")),
        event("bob", "click", clock(), token=ann),
        event("ann", "click", clock(), token="not-a-token"),
    ]
    await results.record_events("shop", events, clock(), SECRET)
    summary = await results.summary("shop", "rescue")
    a, b = summary["variants"]
    assert (a["impressions"], a["clicks"], a["dismisses"], a["conversion_events"]) == (1, 1, 0, 1)
    assert (b["impressions"], b["clicks"], b["dismisses"], b["conversion_events"]) == (1, 0, 1, 0)
    assert a["click_rate"] == 1.0
    assert summary["holdout"]["impressions"] == 0
    # the other site's token counts on the other site only
    await results.record_events(
        "other", [event("ann", "click", clock(), token=token("ann", site="other"))], clock(), SECRET
    )
    assert (await results.summary("other", "rescue"))["variants"][0]["clicks"] == 1
    assert (await results.summary("shop", "rescue"))["variants"][0]["clicks"] == 1


async def test_summary_lift_and_p_value(results: Recorded, clock: Clock) -> None:
    t0 = clock()
    for i in range(40):
        vid = f"v{i}"
        arm = [("rescue", "home_popup")] if i % 2 else []
        await results.record_decisions("shop", vid, [] if arm else [served("rescue", "a")], arm, t0)
    clock.advance(86400)
    # variant a: 12 of 20 convert; holdout: 4 of 20
    buyers = [f"v{i}" for i in range(0, 24, 2)] + [f"v{i}" for i in range(1, 8, 2)]
    await results.record_events(
        "shop", [event(v, "purchase", clock(), value=2.0) for v in buyers], clock(), SECRET
    )
    summary = await results.summary("shop", "rescue")
    assert summary["goals"] == ["purchase", "signup"] and summary["holdout_percent"] == 10
    a, b = summary["variants"]
    assert (a["exposed"], a["conversions"], a["conversion_rate"]) == (20, 12, 0.6)
    assert summary["holdout"]["conversions"] == 4
    expected = two_proportion_z(12, 20, 4, 20)
    assert a["lift"]["available"] is True
    assert a["lift"]["z"] == pytest.approx(expected.z)
    assert a["lift"]["p_value"] == pytest.approx(expected.p_value)
    assert a["lift"]["relative"] == pytest.approx(2.0)  # 0.6 vs 0.2
    assert 0 < a["lift"]["p_value"] < 0.05
    assert b["lift"] == {"available": False, "reason": "the variant has no exposed visitors"}


async def test_campaign_without_holdout_and_unknown_campaign(
    results: Recorded, clock: Clock
) -> None:
    await results.record_decisions("shop", "ann", [served("banner", "a", "hero")], [], clock())
    summary = await results.summary("shop", "banner")
    lift = summary["variants"][0]["lift"]
    assert lift == {"available": False, "reason": "the campaign has no holdout"}
    with pytest.raises(NotFoundError):
        await results.summary("shop", "nope")


async def test_scripts_reload_after_script_flush(
    results: Recorded, services: Services, clock: Clock
) -> None:
    await services.clients.raw.script_flush()
    await results.record_decisions("shop", "ann", [served("rescue", "a")], [], clock())
    clock.advance(5)
    await results.record_events("shop", [event("ann", "signup", clock())], clock(), SECRET)
    assert (await results.summary("shop", "rescue"))["variants"][0]["conversions"] == 1


async def test_admin_route(settings: Settings, clock: Clock) -> None:
    app = create_app(settings, clock=clock)
    path = "/v1/admin/sites/{site}/campaigns/{id}/results"
    if not any(r.get_info().get("formatter") == path for r in app.router.resources()):
        app.add_routes(results_routes.routes)  # until app.py registers them
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(
            "/v1/admin/sites",
            headers=admin_headers(),
            json={"id": "shop", "name": "Shop", "prebuilt": False},
        )
        assert resp.status == 201, await resp.text()
        # a campaign's placement and contents must exist first
        for path, item in (("placements", {"id": "home_popup", "kind": "popup"}),
                           ("content", {"id": "c1", "kind": "popup",
                                        "payload": {"title": "1", "body": "b"}}),
                           ("content", {"id": "c2", "kind": "popup",
                                        "payload": {"title": "2", "body": "b"}})):  # fmt: skip
            made = await client.post(f"/v1/admin/sites/shop/{path}", headers=admin_headers(),
                                     json=item)  # fmt: skip
            assert made.status == 201, await made.text()
        resp = await client.post(
            "/v1/admin/sites/shop/campaigns", headers=admin_headers(), json=RESCUE
        )
        assert resp.status == 201, await resp.text()
        url = "/v1/admin/sites/shop/campaigns/rescue/results"
        resp = await client.get(url, headers=admin_headers())
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["campaign"] == "rescue"
        assert [v["id"] for v in body["variants"]] == ["a", "b"]
        assert body["holdout"]["exposed"] == 0
        assert (await client.get(url)).status == 401
        missing = await client.get(url.replace("rescue", "nope"), headers=admin_headers())
        assert missing.status == 404
        assert (await missing.json())["error"]["code"] == "not_found"
