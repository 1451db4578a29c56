"""Building programs: dependency order, bits, staleness, no JIT; explain; hashing; warm."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from segserver.bench.features import build_features
from segserver.dsl.validate import instant
from segserver.engine import (
    DISPATCHERS,
    SegmentDef,
    build_program,
    evaluate,
    evaluate_batch,
    explain,
    jitcache,
    kernels,
    members,
    next_change,
    warm,
)
from segserver.engine import reference as twin
from segserver.engine.hashing import bucket_of, mix64, salt_hash, visitor_bucket
from segserver.profile.identity import visitor_hash
from segserver.profile.schema import DAY_SECONDS, Schema
from segserver.profile.vocabulary import Vocabulary

LAYOUT = Schema().layout
NOW = instant("2026-11-22T12:00:00Z", "now")


@pytest.fixture(params=["py", "numba"])
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(impl: str, program, features, now):  # type: ignore[no-untyped-def]
    out = np.zeros(program.words, np.uint64)
    (twin.evaluate if impl == "py" else evaluate)(program, features, now, out)
    return members(program, out), (twin.next_change if impl == "py" else next_change)(
        program, features, now
    )


def test_segments_of_segments_in_dependency_order(impl: str) -> None:
    segments = [
        SegmentDef(
            "vip_not_mobile",
            {"all": [{"segment": "vip"}, {"not": {"segment": "mobile"}}]},
            priority=5,
        ),
        SegmentDef("vip_or_mobile", {"any": [{"segment": "vip"}, {"segment": "mobile"}]}),
        SegmentDef("vip", {"attr": "total_spent", "op": "gte", "value": 1000}, priority=9),
        SegmentDef("mobile", {"attr": "device", "op": "eq", "value": "mobile"}),
    ]
    vocab = Vocabulary({"device": ["desktop", "mobile"]})
    program = build_program(segments, LAYOUT, vocab)
    assert program.segment_ids == ("vip_not_mobile", "vip_or_mobile", "vip", "mobile")
    assert program.order.index(2) < program.order.index(0)
    f = build_features(LAYOUT, vocab, {"total_spent": 2000, "device": "desktop"}, NOW)
    assert run(impl, program, f, NOW)[0] == ["vip", "vip_not_mobile", "vip_or_mobile"]
    f = build_features(LAYOUT, vocab, {"device": "mobile"}, NOW)
    assert run(impl, program, f, NOW)[0] == ["mobile", "vip_or_mobile"]


def test_more_than_64_segments_use_more_words(impl: str) -> None:
    segments = [
        SegmentDef(f"s{i}", {"attr": "orders", "op": "gte", "value": i}) for i in range(150)
    ]
    program = build_program(segments, LAYOUT, Vocabulary())
    assert program.words == 3
    f = build_features(LAYOUT, Vocabulary(), {"orders": 100}, NOW)
    found, _ = run(impl, program, f, NOW)
    assert sorted(found) == sorted(f"s{i}" for i in range(101))


def test_string_operators_go_stale_when_new_values_appear() -> None:
    vocab = Vocabulary({"utm_source": ["newsletter"], "country": ["DE"]})
    program = build_program(
        [
            SegmentDef("a", {"attr": "utm_source", "op": "ieq", "value": "NEWSLETTER"}),
            SegmentDef("b", {"attr": "country", "op": "eq", "value": "DE"}),
        ],
        LAYOUT,
        vocab,
    )
    vocab.add("country", "FR", 2)  # `eq "DE"` cannot change: not stale
    assert not program.is_stale(vocab)
    vocab.add("utm_source", "Newsletter", 2)
    assert program.is_stale(vocab)
    fresh = build_program(
        [SegmentDef("a", {"attr": "utm_source", "op": "ieq", "value": "NEWSLETTER"})], LAYOUT, vocab
    )
    f = build_features(LAYOUT, vocab, {"utm_source": "Newsletter"}, NOW)
    out = np.zeros(1, np.uint64)
    evaluate(fresh, f, NOW, out)
    assert members(fresh, out) == ["a"]


def test_unknown_literals_watch_their_attribute() -> None:
    vocab = Vocabulary()
    program = build_program(
        [SegmentDef("fr", {"attr": "country", "op": "in", "value": ["FR"]})], LAYOUT, vocab
    )
    assert not program.is_stale(vocab)
    vocab.add("country", "FR", 1)
    assert program.is_stale(vocab)


def test_building_a_program_never_compiles() -> None:
    before = {d: len(d.overloads) for d in DISPATCHERS}
    segments = [
        SegmentDef(
            f"s{i}",
            {
                "all": [
                    {"attr": "orders", "op": "gte", "value": i},
                    {"attr": "last_seen", "op": "within", "value": "1d"},
                ]
            },
        )
        for i in range(300)
    ]
    build_program(segments, LAYOUT, Vocabulary())
    assert {d: len(d.overloads) for d in DISPATCHERS} == before


def test_explain_names_the_failing_clause() -> None:
    vocab = Vocabulary({"device": ["mobile"]})
    program = build_program(
        [
            SegmentDef(
                "big",
                {
                    "all": [
                        {"attr": "orders", "op": "gte", "value": 1},
                        {"attr": "total_spent", "op": "gt", "value": 1000},
                        {"attr": "device", "op": "eq", "value": "mobile"},
                    ]
                },
            )
        ],
        LAYOUT,
        vocab,
    )
    f = build_features(LAYOUT, vocab, {"orders": 3, "total_spent": 250}, NOW)
    (entry,) = explain(program, f, NOW)
    assert entry["segment"] == "big" and not entry["matched"]
    assert entry["decided_by"] == {
        "path": "rule.all[1]",
        "op": "cmp",
        "result": False,
        "actual": 250.0,
    }
    assert [t["path"] for t in entry["trace"]] == ["rule.all[0]", "rule.all[1]"]
    f = build_features(LAYOUT, vocab, {"orders": 3}, NOW)
    (entry,) = explain(program, f, NOW)
    assert entry["decided_by"]["actual"] is None  # missing


def test_no_time_conditions_never_change(impl: str) -> None:
    program = build_program(
        [SegmentDef("a", {"attr": "orders", "op": "gt", "value": 1})], LAYOUT, Vocabulary()
    )
    f = build_features(LAYOUT, Vocabulary(), {"orders": 3}, NOW)
    assert run(impl, program, f, NOW)[1] == math.inf


@pytest.mark.parametrize(
    ("rule", "profile", "change"),
    [
        (
            {"attr": "last_order_at", "op": "within", "value": "30d"},
            {"last_order_at": "2026-11-20T00:00:00Z"},
            "2026-12-20T00:00:00Z",
        ),
        (
            {"attr": "cart_updated_at", "op": "older_than", "value": "30m"},
            {"cart_updated_at": "2026-11-22T11:45:00Z"},
            "2026-11-22T12:15:00Z",
        ),
        (
            {"attr": "cart_updated_at", "op": "older_than", "value": "30m"},
            {"cart_updated_at": "2026-11-22T11:00:00Z"},
            None,
        ),
        (
            {"attr": "birthday", "op": "anniversary_within", "value": "7d"},
            {"birthday": "1990-12-01"},
            "2026-11-25T00:00:00Z",
        ),
        (
            {"attr": "birthday", "op": "anniversary_within", "value": "7d"},
            {"birthday": "1990-11-24"},
            "2026-11-25T00:00:00Z",
        ),
        (
            {"attr": "page_views", "window": "3d", "op": "gte", "value": 5},
            {"page_views.daily": {"0": 1, "-2": 4}},
            "2026-11-23T00:00:00Z",
        ),
        (
            {"attr": "page_views", "window": "3d", "op": "gte", "value": 5},
            {"page_views.daily": {"0": 5, "-2": 4}},
            "2026-11-25T00:00:00Z",
        ),
        ({"attr": "page_views", "window": "3d", "op": "gte", "value": 5}, {}, None),
    ],
)
def test_next_change(impl: str, rule, profile, change) -> None:  # type: ignore[no-untyped-def]
    vocab = Vocabulary()
    program = build_program([SegmentDef("a", rule)], LAYOUT, vocab)
    f = build_features(LAYOUT, vocab, profile, NOW)
    before, when = run(impl, program, f, NOW)
    assert when == (math.inf if change is None else instant(change, "change"))
    if change is not None:
        assert run(impl, program, f, when - 1)[0] == before
        assert run(impl, program, f, when)[0] != before


# Bucket hash, version 1: fixed vectors (also in docs/rules.md). Never change these.
VECTORS = [
    ("v-0", "exp-1", 6275),
    ("v-1", "exp-1", 4154),
    ("v-2", "exp-1", 1945),
    ("visitor-42", "cart_rescue", 1718),
    ("alice@example.com", "holdout", 5395),
]


def test_bucket_vectors() -> None:
    assert salt_hash("exp-1") == int.from_bytes(
        __import__("hashlib").blake2b(b"exp-1", digest_size=8).digest()[:4], "little"
    )
    assert mix64(0) == 0
    assert mix64(1) == 0x5692161D100B05E5
    for visitor, salt, bucket in VECTORS:
        got = visitor_bucket(visitor, salt)
        assert got == bucket_of(visitor_hash(visitor), salt_hash(salt))
        assert 0 <= got < 10_000
        assert got == bucket


def test_buckets_split_evenly_and_kernels_agree(impl: str) -> None:
    program = build_program(
        [
            SegmentDef("a", {"bucket": [0, 25], "salt": "s"}),
            SegmentDef("b", {"bucket": [25, 100], "salt": "s"}),
        ],
        LAYOUT,
        Vocabulary(),
    )
    counts = {"a": 0, "b": 0}
    for i in range(2000):
        f = build_features(LAYOUT, Vocabulary(), {"$visitor": f"visitor-{i}"}, NOW)
        found, _ = run(impl, program, f, NOW)
        assert len(found) == 1
        assert (visitor_bucket(f"visitor-{i}", "s") < 2500) == (found == ["a"])
        counts[found[0]] += 1
    assert 400 < counts["a"] < 600


def test_warm_points_the_kernel_cache_at_the_given_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the re-pointing: compiling every signature into an empty cache takes minutes.
    monkeypatch.setattr("segserver.engine.SIGNATURES", ())
    previous = jitcache.root()
    try:
        warm(tmp_path / "kernels")
        path = kernels.eval_single._cache.cache_path
        assert path == str(tmp_path / "kernels" / f"kernels-{jitcache.KERNEL_KEY}")
    finally:
        jitcache.use_root(previous)
    assert kernels.eval_single._cache.cache_path == str(jitcache.kernels_dir())


def test_window_days_outside_the_ring_count_zero(impl: str) -> None:
    program = build_program(
        [SegmentDef("a", {"attr": "page_views", "window": "7d", "op": "gte", "value": 1})],
        LAYOUT,
        Vocabulary(),
    )
    f = build_features(LAYOUT, Vocabulary(), {"page_views.daily": {"-3": 2}}, NOW)
    assert run(impl, program, f, NOW)[0] == ["a"]
    assert run(impl, program, f, NOW + 3 * DAY_SECONDS)[0] == ["a"]
    assert run(impl, program, f, NOW + 4 * DAY_SECONDS)[0] == []
    assert run(impl, program, f, NOW + 40 * DAY_SECONDS)[0] == []  # ring slot reused: stale


def test_parallel_batch_matches_single_on_many_profiles() -> None:
    from segserver.bench.eval_sets import REALISTIC, make_vocab, random_profiles

    vocab = make_vocab()
    program = build_program([SegmentDef(sid, rule) for sid, rule in REALISTIC], LAYOUT, vocab)
    block = random_profiles(LAYOUT, 3000, np.random.default_rng(3))
    one = np.zeros((3000, program.words), np.uint64)
    many = np.zeros((3000, program.words), np.uint64)
    evaluate_batch(program, block, NOW, one)
    evaluate_batch(program, block, NOW, many, parallel=True)
    assert (one == many).all()
    for i in range(0, 3000, 97):
        out = np.zeros(program.words, np.uint64)
        evaluate(program, block[i], NOW, out)
        assert (out == one[i]).all()
    assert 0 < int(np.count_nonzero(one)) < 3000 * program.words


def test_an_empty_program_matches_nothing(impl: str) -> None:
    program = build_program([], LAYOUT, Vocabulary())
    f = build_features(LAYOUT, Vocabulary(), {"orders": 3}, NOW)
    assert run(impl, program, f, NOW) == ([], math.inf)
    out = np.ones((5, program.words), np.uint64)
    evaluate_batch(program, np.tile(f, (5, 1)), NOW, out)
    assert not out.any()


def test_large_programs_take_the_branch_free_kernel_and_agree() -> None:
    from segserver.bench.eval_sets import generated_segments, make_vocab, random_profiles

    program = build_program(generated_segments(300, 4), LAYOUT, make_vocab())
    assert program.wide is not None  # > wide.MIN_ROWS rows
    block = random_profiles(LAYOUT, 60, np.random.default_rng(5))
    for f in block:
        want = np.zeros(program.words, np.uint64)
        twin.evaluate(program, f, NOW, want)
        got = np.zeros(program.words, np.uint64)
        evaluate(program, f, NOW, got)
        assert (got == want).all()
    # a segment longer than the reach register keeps the short-circuit interpreter
    long_rule = {"any": [{"attr": "orders", "op": "eq", "value": i} for i in range(70)]}
    many = [SegmentDef(f"s{i}", {"attr": "orders", "op": "gte", "value": i}) for i in range(600)]
    assert build_program([*many, SegmentDef("long", long_rule)], LAYOUT, Vocabulary()).wide is None
    assert build_program(many, LAYOUT, Vocabulary()).wide is not None
