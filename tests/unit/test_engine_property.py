"""Property test: random rules and profiles; the twin, the single and the batch kernels,
the generated batch code and NumPy agree (bits and next_change)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segserver.bench.numpy_eval import evaluate_numpy
from segserver.engine import (
    SegmentDef,
    build_program,
    evaluate,
    evaluate_batch,
    generate,
    next_change,
    next_change_batch,
)
from segserver.engine import reference as twin
from segserver.engine.wide import build_tables
from segserver.profile.schema import DAY_SECONDS, Schema
from segserver.profile.vocabulary import Vocabulary

LAYOUT = Schema().layout
NOW0 = 1_795_000_000.0  # 2026-11-18
NUMBERS = ["orders", "total_spent", "cart_items", "email_opens", "email_clicks", "sessions"]
INSTANTS = ["last_order_at", "cart_updated_at", "last_seen", "birthday"]
CATEGORIES = ["country", "device"]
STRINGS = ["DE", "AT", "de", "FR", "mobile", "Mobile", "desktop"]
TAGS = ["a", "b", "c", "d"]
WINDOWED = ["sessions", "page_views", "orders"]
DURATIONS = ["30s", "30m", "1h", "1d", "2d", "7d", "30d", "1w"]
VALUES = st.sampled_from([0, 1, 2, 3, 5, 10, 0.5, 100, -1])


def _vocab() -> Vocabulary:
    return Vocabulary({"country": STRINGS, "device": STRINGS, "tags": TAGS})


def leaf(segments_before: int) -> st.SearchStrategy[dict[str, Any]]:
    cmp = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])
    num = st.builds(
        lambda a, o, v: {"attr": a, "op": o, "value": v}, st.sampled_from(NUMBERS), cmp, VALUES
    )
    between = st.builds(
        lambda a, x, y: {"attr": a, "op": "between", "value": sorted([x, y])},
        st.sampled_from(NUMBERS),
        VALUES,
        VALUES,
    )
    num_in = st.builds(
        lambda a, o, v: {"attr": a, "op": o, "value": v},
        st.sampled_from(NUMBERS),
        st.sampled_from(["in", "not_in"]),
        st.lists(VALUES, min_size=1, max_size=4),
    )
    age = st.builds(
        lambda a, o, d: {"attr": a, "op": o, "value": d},
        st.sampled_from(INSTANTS),
        st.sampled_from(["within", "older_than"]),
        st.sampled_from(DURATIONS),
    )
    at = st.builds(
        lambda a, o, k: {"attr": a, "op": o, "value": NOW0 + k * 3600},
        st.sampled_from(INSTANTS),
        cmp,
        st.integers(-48, 48),
    )
    anniv = st.builds(
        lambda d: {"attr": "birthday", "op": "anniversary_within", "value": f"{d}d"},
        st.integers(1, 40),
    )
    cat = st.builds(
        lambda a, o, v: {"attr": a, "op": o, "value": v},
        st.sampled_from(CATEGORIES),
        st.sampled_from(["eq", "ne", "ieq", "starts_with", "ends_with", "contains"]),
        st.sampled_from([*STRINGS, "unknown", "e", "M"]),
    )
    cat_in = st.builds(
        lambda a, o, v: {"attr": a, "op": o, "value": v},
        st.sampled_from(CATEGORIES),
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from([*STRINGS, "zz"]), min_size=1, max_size=3),
    )
    tags = st.builds(
        lambda o, v: {"attr": "tags", "op": o, "value": v},
        st.sampled_from(["has_any", "has_all", "has_none"]),
        st.lists(st.sampled_from([*TAGS, "zz"]), min_size=1, max_size=3),
    )
    presence = st.builds(
        lambda a, o: {"attr": a, "op": o},
        st.sampled_from([*NUMBERS, *INSTANTS, *CATEGORIES, "tags"]),
        st.sampled_from(["exists", "missing"]),
    )
    window = st.builds(
        lambda a, d, o, c, v: {
            "attr": a,
            "window": f"{d}d",
            "offset": f"{o}d",
            "op": c,
            "value": v,
        },
        st.sampled_from(WINDOWED),
        st.integers(1, 20),
        st.integers(0, 10),
        cmp,
        st.sampled_from([0, 1, 3, 10]),
    )
    trend = st.builds(
        lambda a, d, c, f: {
            "attr": a,
            "window": f"{d}d",
            "op": c,
            "factor": f,
            "ref": {"attr": a, "window": f"{d}d", "offset": f"{d}d"},
        },
        st.sampled_from(WINDOWED),
        st.integers(1, 17),
        cmp,
        st.sampled_from([0.5, 1, 2]),
    )
    ref = st.builds(
        lambda a, o, b, f: {"attr": a, "op": o, "ref": b, "factor": f},
        st.sampled_from(NUMBERS),
        cmp,
        st.sampled_from(NUMBERS),
        st.sampled_from([0.5, 1, 2]),
    )
    ref_t = st.builds(
        lambda a, o, b: {"attr": a, "op": o, "ref": b},
        st.sampled_from(INSTANTS),
        cmp,
        st.sampled_from(INSTANTS),
    )
    ratio = st.builds(
        lambda a, b, o, v: {"ratio": [a, b], "op": o, "value": v},
        st.sampled_from(NUMBERS),
        st.sampled_from(NUMBERS),
        cmp,
        VALUES,
    )
    bucket = st.builds(
        lambda lo, w: {"bucket": [lo, min(100, lo + w)], "salt": "s"},
        st.integers(0, 99),
        st.integers(1, 60),
    )
    const = st.builds(lambda b: {"const": b}, st.booleans())
    options = [
        num,
        between,
        num_in,
        age,
        at,
        anniv,
        cat,
        cat_in,
        tags,
        presence,
        window,
        trend,
        ref,
        ref_t,
        ratio,
        bucket,
        const,
    ]
    if segments_before:
        options.append(
            st.builds(lambda i: {"segment": f"s{i}"}, st.integers(0, segments_before - 1))
        )
    return st.one_of(options)


def rule(segments_before: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf(segments_before),
        lambda inner: st.one_of(
            st.builds(lambda c: {"all": c}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"any": c}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"not": c}, inner),
        ),
        max_leaves=6,
    )


@st.composite
def programs(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 4))
    return [draw(rule(i)) for i in range(count)]


@st.composite
def profiles(draw: st.DrawFn, now: float) -> np.ndarray:
    f = np.frombuffer(LAYOUT.template, np.float64).copy()
    f32 = f.view(np.float32)
    maybe = st.booleans()
    for name in NUMBERS:
        if draw(maybe):
            f[LAYOUT[name].index] = draw(st.sampled_from([0, 1, 2, 3, 5, 10, 0.5, 100, 7.25]))
    for name in INSTANTS:
        if draw(maybe):
            if name == "birthday":
                f[LAYOUT[name].index] = (draw(st.integers(-20000, 20000))) * DAY_SECONDS
            else:
                f[LAYOUT[name].index] = (
                    now
                    + draw(
                        st.sampled_from(
                            [-1, 1, 0, -1800, -3600, -86400, -30 * 86400, -7 * 86400, 600]
                        )
                    )
                    + draw(st.integers(-3, 3))
                )
    for name in CATEGORIES:
        if draw(maybe):
            f[LAYOUT[name].index] = draw(st.integers(1, len(STRINGS)))
    tags = draw(st.lists(st.integers(1, len(TAGS)), max_size=3, unique=True))
    for i, code in enumerate(tags):
        f[LAYOUT["tags"].index + i] = code
    today = int(now // DAY_SECONDS)
    for name in WINDOWED:
        wi = LAYOUT[name].window_index
        assert wi is not None
        if draw(maybe):
            f32[wi] = today - draw(st.integers(0, 3))
            for slot in draw(st.lists(st.integers(0, 34), max_size=8)):
                f32[wi + 1 + slot] = draw(st.integers(0, 5))
    if draw(maybe):
        f[3] = draw(st.integers(0, 2**32 - 1))
    return f


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rules=programs(), now=st.integers(-3 * 86400, 3 * 86400))
def test_twin_single_and_batch_agree(
    data: st.DataObject, rules: list[dict[str, Any]], now: int
) -> None:
    t = NOW0 + now
    program = build_program([SegmentDef(f"s{i}", r) for i, r in enumerate(rules)], LAYOUT, _vocab())
    block = np.stack([data.draw(profiles(t)) for _ in range(3)])
    expected = np.zeros((3, program.words), np.uint64)
    wide = build_tables(program.code, program.consts, min_rows=0)
    forced = dataclasses.replace(program, wide=wide)  # the large-program kernel, forced
    for i in range(3):
        twin.evaluate(program, block[i], t, expected[i])
        got = np.zeros(program.words, np.uint64)
        evaluate(program, block[i], t, got)
        assert (got == expected[i]).all(), i
        if wide is not None:  # None: a segment longer than the reach register
            evaluate(forced, block[i], t, got)
            assert (got == expected[i]).all(), i
        assert next_change(program, block[i], t) == twin.next_change(program, block[i], t)
    for parallel in (False, True):
        out = np.zeros((3, program.words), np.uint64)
        evaluate_batch(program, block, t, out, parallel=parallel)
        assert (out == expected).all()
    assert (evaluate_numpy(program, block, t) == expected).all()  # the benchmark's baseline
    changes = np.zeros(3)
    next_change_batch(program, block, t, changes)
    assert changes.tolist() == [twin.next_change(program, block[i], t) for i in range(3)]
    # several blocks (state carried across blocks must be reset): the same rows, tiled
    tiled = np.ascontiguousarray(np.tile(block, (200, 1)))
    out = np.zeros((600, program.words), np.uint64)
    evaluate_batch(program, tiled, t, out)
    assert (out == np.tile(expected, (200, 1))).all()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rules=programs(), now=st.integers(-3 * 86400, 3 * 86400))
def test_nothing_flips_before_next_change(
    data: st.DataObject, rules: list[dict[str, Any]], now: int
) -> None:
    t = NOW0 + now
    program = build_program([SegmentDef(f"s{i}", r) for i, r in enumerate(rules)], LAYOUT, _vocab())
    f = data.draw(profiles(t))
    at_now = np.zeros(program.words, np.uint64)
    evaluate(program, f, t, at_now)
    change = next_change(program, f, t)
    assert change > t
    later = np.zeros(program.words, np.uint64)
    for probe in (t + 1, min(change - 1, t + 40 * DAY_SECONDS), (t + min(change, t + 1e8)) / 2):
        if t < probe < change:
            evaluate(program, f, probe, later)
            assert (later == at_now).all(), probe


@settings(max_examples=300, deadline=None)
@given(
    born=st.integers(-30000, 30000),
    today=st.integers(-1000, 30000),
    seconds=st.integers(0, DAY_SECONDS - 1),
    days=st.integers(1, 366),
)
def test_anniversaries_across_years_agree(born: int, today: int, seconds: int, days: int) -> None:
    program = build_program(
        [SegmentDef("a", {"attr": "birthday", "op": "anniversary_within", "value": f"{days}d"})],
        LAYOUT,
        _vocab(),
    )
    f = np.frombuffer(LAYOUT.template, np.float64).copy()
    f[LAYOUT["birthday"].index] = born * DAY_SECONDS
    now = float(today * DAY_SECONDS + seconds)
    expected = np.zeros(1, np.uint64)
    got = np.zeros(1, np.uint64)
    twin.evaluate(program, f, now, expected)
    evaluate(program, f, now, got)
    assert got[0] == expected[0]
    assert next_change(program, f, now) == twin.next_change(program, f, now)
    out = np.zeros((1, 1), np.uint64)
    evaluate_batch(program, f[None, :].copy(), now, out)
    assert out[0, 0] == expected[0]


@st.composite
def many_rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(12, 30))
    return [draw(rule(i)) for i in range(count)]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rules=many_rules())
def test_generated_code_agrees_with_the_twin(
    data: st.DataObject, rules: list[dict[str, Any]]
) -> None:
    # One program of many random rules per example: each generated kernel is a compile
    # of seconds in a worker process.
    program = build_program([SegmentDef(f"s{i}", r) for i, r in enumerate(rules)], LAYOUT, _vocab())
    assert generate(program).result(600)
    for shift in data.draw(st.lists(st.integers(-3 * 86400, 3 * 86400), min_size=2, max_size=3)):
        t = NOW0 + shift
        block = np.stack([data.draw(profiles(t)) for _ in range(40)])
        expected = np.zeros((40, program.words), np.uint64)
        for i in range(40):
            twin.evaluate(program, block[i], t, expected[i])
        out = np.zeros((40, program.words), np.uint64)
        evaluate_batch(program, block, t, out)  # the generated kernel
        assert (out == expected).all()
        tiled = np.ascontiguousarray(np.tile(block, (13, 1)))  # 520 rows: several blocks
        out = np.zeros((520, program.words), np.uint64)
        evaluate_batch(program, tiled, t, out, parallel=True)
        assert (out == np.tile(expected, (13, 1))).all()
        assert (evaluate_numpy(program, block, t) == expected).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    rules=st.lists(rule(0), min_size=1, max_size=3),
    now=st.integers(-3 * 86400, 3 * 86400),
)
def test_next_change_with_fractional_and_huge_window_counts(
    data: st.DataObject, rules: list[dict[str, Any]], now: int
) -> None:
    # Whole-number rings take the running-sum path of timing.window_sums_ahead; these
    # (amounts, tiny and huge values, a negative zero) take the day-by-day sums.
    t = NOW0 + now
    program = build_program([SegmentDef(f"s{i}", r) for i, r in enumerate(rules)], LAYOUT, _vocab())
    f = data.draw(profiles(t))
    f32 = f.view(np.float32)
    values = st.sampled_from([0.1, 2.5, 1e-7, 3e9, -0.0, 7.0, 1e30, 0.3])
    for name in WINDOWED:
        wi = LAYOUT[name].window_index
        assert wi is not None
        for slot in data.draw(st.lists(st.integers(0, 34), max_size=10)):
            f32[wi + 1 + slot] = data.draw(values)
    assert next_change(program, f, t) == twin.next_change(program, f, t)
    changes = np.zeros(2)
    next_change_batch(program, np.stack([f, f]), t, changes)
    assert changes.tolist() == [twin.next_change(program, f, t)] * 2
