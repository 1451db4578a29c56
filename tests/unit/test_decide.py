"""Priority resolution (segserver/decide/), pure and exhaustive."""

from __future__ import annotations

import itertools

import pytest

from segserver import decide as d

NOW = 1_790_000_000.0
PERIODS = d.Periods.at(NOW, 3)


def camp(cid: str, placement: str = "p", priority: int = 0, **kw: object) -> d.Campaign:
    variants = kw.pop("variants", (d.Variant("a", f"{cid}-content", 1),))
    return d.Campaign(cid, placement, priority, variants, **kw)  # type: ignore[arg-type]


def winner(result: d.Result, placement: str = "p") -> str | None:
    dec = result.decisions[placement]
    return None if dec is None else dec.campaign


NO_POLICY = d.Policy()


def run(
    campaigns: list[d.Campaign], segments: frozenset[str] | set[str] = frozenset(),
    placements: tuple[str, ...] = ("p",), counts: dict[str, int] | None = None,
    policy: d.Policy = NO_POLICY, visitor: str = "v1", now: float = NOW,
) -> d.Result:  # fmt: skip
    return d.decide(visitor, placements, campaigns, frozenset(segments),
                    d.Counts(counts or {}, PERIODS), policy, now)  # fmt: skip


def test_bucket_vectors() -> None:
    # Version 1: blake2b-64("1:<salt>:<visitor>") little-endian % 10 000. Fixed forever.
    assert [d.bucket("alice", "variant:c"), d.bucket("bob", "holdout:c"), d.bucket("", "")] == [
        9484, 3774, 9112]  # fmt: skip
    import hashlib

    raw = hashlib.blake2b(b"1:variant:c:alice", digest_size=8).digest()
    assert d.bucket("alice", "variant:c") == int.from_bytes(raw, "little") % 10_000


def test_highest_priority_wins_ties_by_id() -> None:
    result = run([camp("b", priority=5), camp("a", priority=5), camp("z", priority=1)])
    assert winner(result) == "a"
    reasons = {c.campaign: c.reason for c in result.considered["p"]}
    assert reasons == {"a": "won", "b": "lower priority than a", "z": "lower priority than a"}


@pytest.mark.parametrize(
    ("include", "match", "exclude", "segments", "eligible"),
    [
        ((), "any", (), set(), True),
        (("x", "y"), "any", (), {"y"}, True),
        (("x", "y"), "any", (), set(), False),
        (("x", "y"), "all", (), {"x"}, False),
        (("x", "y"), "all", (), {"x", "y", "z"}, True),
        (("x",), "any", ("z",), {"x", "z"}, False),
        ((), "any", ("z",), {"q"}, True),
    ],
)
def test_audience(include: tuple[str, ...], match: str, exclude: tuple[str, ...],
                  segments: set[str], eligible: bool) -> None:  # fmt: skip
    c = camp("c", include=include, match=match, exclude=exclude)
    assert (winner(run([c], segments)) == "c") is eligible


@pytest.mark.parametrize(
    ("start", "end", "eligible"),
    [(None, None, True), (NOW, None, True), (NOW + 1, None, False), (None, NOW, False),
     (None, NOW + 1, True), (NOW - 10, NOW + 10, True)],
)  # fmt: skip
def test_schedule_is_half_open(start: float | None, end: float | None, eligible: bool) -> None:
    assert (winner(run([camp("c", start=start, end=end)])) == "c") is eligible


@pytest.mark.parametrize("status", ["draft", "paused", "archived"])
def test_only_active_campaigns(status: str) -> None:
    result = run([camp("c", priority=9, status=status), camp("d")])
    assert winner(result) == "d"


def test_lower_priority_takes_over_when_the_higher_one_is_ineligible() -> None:
    campaigns = [camp("hi", priority=9, include=("vip",)), camp("lo", priority=1)]
    assert winner(run(campaigns, set())) == "lo"
    assert winner(run(campaigns, {"vip"})) == "hi"


@pytest.mark.parametrize(
    ("per", "field_period"),
    [("session", PERIODS.session), ("day", PERIODS.day), ("week", PERIODS.week), ("lifetime", 0)],
)
def test_caps_per_period(per: str, field_period: int) -> None:
    c = camp("c", caps=(d.Cap(per, 2),))
    assert winner(run([c], counts={f"c|{per}|{field_period}": 1})) == "c"
    capped = run([c], counts={f"c|{per}|{field_period}": 2})
    assert winner(capped) is None
    assert capped.considered["p"][0].reason == f"frequency cap 2 per {per} reached"
    # a count of another period (yesterday, the previous session) does not count
    assert winner(run([c], counts={f"c|{per}|{field_period - 1}": 5})) == "c"


def test_exclusive_group_allows_one_per_answer() -> None:
    campaigns = [camp("a", "p1", 9, group="g"), camp("b", "p2", 5, group="g"),
                 camp("c", "p3", 1, group="other")]  # fmt: skip
    result = run(campaigns, placements=("p1", "p2", "p3"))
    assert [winner(result, p) for p in ("p1", "p2", "p3")] == ["a", None, "c"]
    assert result.considered["p2"][0].reason == "exclusive group g already used"


def test_group_winner_is_the_highest_priority_whatever_the_placement_order() -> None:
    campaigns = [camp("lo", "p1", 1, group="g"), camp("hi", "p2", 9, group="g")]
    for order in itertools.permutations(("p1", "p2")):
        result = run(campaigns, placements=order)
        assert (winner(result, "p1"), winner(result, "p2")) == (None, "hi")


def test_site_wide_interruptive_limits() -> None:
    pops = [camp("a", "p1", 9, interruptive=True), camp("b", "p2", 5, interruptive=True),
            camp("banner", "p3", 1)]  # fmt: skip
    policy = d.Policy(interruptive_per_session=1)
    result = run(pops, placements=("p1", "p2", "p3"), policy=policy)
    assert [winner(result, p) for p in ("p1", "p2", "p3")] == ["a", None, "banner"]
    already = {f"*|session|{PERIODS.session}": 1}
    none = run(pops, placements=("p1", "p2"), policy=policy, counts=already)
    assert (winner(none, "p1"), winner(none, "p2")) == (None, None)
    daily = run(pops, placements=("p1",), counts={f"*|day|{PERIODS.day}": 3},
                policy=d.Policy(interruptive_per_day=3))  # fmt: skip
    assert winner(daily, "p1") is None


def test_holdout_is_sticky_reported_and_passes_the_placement_on() -> None:
    c = camp("c", priority=9, holdout=50)
    other = camp("o", priority=1)
    held = [f"v{i}" for i in range(200) if d.in_holdout(c, f"v{i}")]
    shown = [f"v{i}" for i in range(200) if not d.in_holdout(c, f"v{i}")]
    assert held and shown
    r = run([c, other], visitor=held[0])
    assert winner(r) == "o"
    assert r.held_out == [("c", "p")]
    assert winner(run([c, other], visitor=shown[0])) == "c"
    assert winner(run([c, other], visitor=held[0])) == "o"  # sticky


def test_global_holdout_sees_nothing() -> None:
    policy = d.Policy(holdout=30)
    ids = [f"v{i}" for i in range(3000)]
    held = [v for v in ids if d.in_global_holdout(policy, v)]
    assert abs(len(held) / len(ids) - 0.30) < 0.03
    r = run([camp("c")], visitor=held[0], policy=policy)
    assert r.global_holdout and winner(r) is None
    assert r.considered["p"][0].reason == "global holdout"


def test_variant_weights_and_zero_weight() -> None:
    c = camp("c", variants=(d.Variant("a", "x", 0), d.Variant("b", "y", 1)))
    assert {d.variant_of(c, f"v{i}").id for i in range(500)} == {"b"}


def test_cap_increments_cover_caps_and_interruptive_counters() -> None:
    campaigns = {"a": camp("a", "p1", 9, caps=(d.Cap("day", 2),), interruptive=True),
                 "b": camp("b", "p2", 1)}  # fmt: skip
    result = run(list(campaigns.values()), placements=("p1", "p2"))
    incs = d.cap_increments(result, campaigns, PERIODS, d.Policy(interruptive_per_session=4))
    assert incs == [([(f"a|day|{PERIODS.day}", 2), (f"*|session|{PERIODS.session}", 4),
                      (f"*|day|{PERIODS.day}", 0)], "a")]  # fmt: skip


def test_tokens_are_signed() -> None:
    secret = b"s" * 32
    dec = d.Decision("p", "c", "a", "content")
    token = d.make_token(secret, "shop", dec, "v1", NOW, ttl=3600)
    body, _, mac = token.partition(".")
    assert d.read_token(secret, token) == {"site": "shop", "campaign": "c", "variant": "a",
                                           "placement": "p", "visitor_id": "v1",
                                           "issued": int(NOW), "expires": int(NOW + 3600),
                                           "id": mac}  # fmt: skip
    assert d.read_token(b"x" * 32, token) is None
    assert d.read_token(secret, body[:-2] + "AA." + mac) is None
    assert d.read_token(secret, "garbage") is None
