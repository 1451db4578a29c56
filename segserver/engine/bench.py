"""`segserver bench eval`: how fast the rule engine is, against its alternatives, in one run.

For each segment set (the prebuilt segments, a realistic 20-segment set, 100 and
1 000 generated segments) it checks that every implementation gives the same answers
on the same profiles, then times: one profile from a feature vector and from the
stored bytes (Numba), the pure-Python twin, the batch kernel on one core and on all
cores, NumPy whole-array evaluation and, when the optional `growthbook` package is
installed, GrowthBook's `evalCondition` on the same rules in its condition format.
It prints times and ratios. `main(argv) -> int` is the CLI entry point.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.dsl.prebuilt import load_prebuilt
from segserver.engine import (
    SegmentDef,
    build_program,
    evaluate,
    evaluate_batch,
    warm,
)
from segserver.engine import reference as twin
from segserver.engine.numpy_eval import evaluate_numpy
from segserver.engine.profiles import code_of
from segserver.profile.schema import DAY_SECONDS, WINDOW_DAYS, Kind, Layout, Schema
from segserver.profile.vocabulary import Vocabulary

NOW = 1_795_348_800.0  # 2026-11-22T12:00:00Z
F64 = npt.NDArray[np.float64]

REALISTIC: list[tuple[str, dict[str, Any]]] = [
    (
        "vip",
        {
            "all": [
                {"attr": "total_spent", "op": "gte", "value": 1000},
                {"attr": "orders", "op": "gte", "value": 5},
            ]
        },
    ),
    ("recent_buyer", {"attr": "last_order_at", "op": "within", "value": "30d"}),
    (
        "cart_active",
        {
            "all": [
                {"attr": "cart_items", "op": "gt", "value": 0},
                {"attr": "cart_updated_at", "op": "within", "value": "1h"},
            ]
        },
    ),
    ("dach", {"attr": "country", "op": "in", "value": ["DE", "AT", "CH"]}),
    ("mobile", {"attr": "device", "op": "eq", "value": "mobile"}),
    (
        "eu_desktop",
        {
            "all": [
                {"attr": "country", "op": "in", "value": ["DE", "AT", "FR", "NL"]},
                {"not": {"attr": "device", "op": "eq", "value": "mobile"}},
            ]
        },
    ),
    ("engaged_30d", {"attr": "page_views", "window": "30d", "op": "gte", "value": 20}),
    ("new_visitor", {"attr": "sessions", "op": "lte", "value": 1}),
    (
        "returning",
        {
            "all": [
                {"attr": "sessions", "op": "gte", "value": 2},
                {"attr": "last_seen", "op": "within", "value": "7d"},
            ]
        },
    ),
    (
        "newsletter",
        {
            "any": [
                {"attr": "utm_source", "op": "in", "value": ["newsletter"]},
                {"attr": "utm_medium", "op": "eq", "value": "email"},
            ]
        },
    ),
    ("big_cart", {"attr": "cart_value", "op": "gte", "value": 200}),
    (
        "lapsed",
        {
            "all": [
                {"attr": "orders", "op": "gte", "value": 1},
                {"attr": "last_order_at", "op": "older_than", "value": "90d"},
            ]
        },
    ),
    ("tagged_vip", {"attr": "tags", "op": "has_any", "value": ["vip", "press"]}),
    (
        "browsers",
        {
            "all": [
                {"attr": "product_views", "window": "7d", "op": "gte", "value": 10},
                {"not": {"attr": "orders", "op": "gte", "value": 1}},
            ]
        },
    ),
    ("email_openers", {"attr": "last_email_open_at", "op": "within", "value": "14d"}),
    ("identified", {"attr": "identified", "op": "eq", "value": True}),
    ("refunders", {"attr": "refunds", "op": "gte", "value": 2}),
    ("sale_hunters", {"attr": "last_product_category", "op": "in", "value": ["sale", "outlet"]}),
    ("signups_2026", {"attr": "signup_at", "op": "gte", "value": "2026-01-01T00:00:00Z"}),
    (
        "support_heavy",
        {
            "all": [
                {"attr": "support_tickets", "op": "gte", "value": 3},
                {"attr": "total_spent", "op": "lt", "value": 100},
            ]
        },
    ),
]

STRINGS = {
    "country": ["DE", "AT", "CH", "FR", "NL", "US", "GB"],
    "device": ["mobile", "desktop", "tablet"],
    "utm_source": ["newsletter", "google", "facebook"],
    "utm_medium": ["email", "cpc", "social"],
    "last_product_category": ["sale", "outlet", "shoes", "shirts"],
    "tags": ["vip", "press", "b2b", "staff"],
}


def make_vocab() -> Vocabulary:
    vocab = Vocabulary()
    for attr, values in STRINGS.items():
        for value in values:
            code_of(vocab, attr, value)
    return vocab


def random_profiles(layout: Layout, n: int, rng: np.random.Generator) -> F64:
    """n profiles (rows) with a realistic mix of present, missing and recent values."""
    block = np.tile(np.frombuffer(layout.template, np.float64), (n, 1))
    f32 = block.view(np.float32)
    today = math.floor(NOW / DAY_SECONDS)
    for attr in layout.attributes.values():
        present = rng.random(n) < 0.7
        i = attr.index
        if attr.kind is Kind.NUMBER:
            values = np.round(
                rng.exponential(50 if "spent" in attr.name or "value" in attr.name else 3, n), 2
            )
        elif attr.kind in (Kind.TIMESTAMP, Kind.DATE):
            values = NOW - rng.exponential(20 * DAY_SECONDS, n)
            if attr.kind is Kind.DATE:
                values = np.floor(rng.uniform(-15000, 15000, n)) * DAY_SECONDS
        elif attr.kind is Kind.FLAG:
            values = (rng.random(n) < 0.5).astype(np.float64)
        elif attr.kind is Kind.CATEGORY:
            values = rng.integers(1, len(STRINGS.get(attr.name, ["x"] * 4)) + 1, n).astype(float)
        else:  # tags
            for slot in range(2):
                codes = rng.integers(1, 5, n).astype(float)
                block[:, i + slot] = np.where(rng.random(n) < 0.3, codes, np.nan)
            continue
        block[:, i] = np.where(present, values, np.nan)
        if attr.window_index is not None:
            wi = attr.window_index
            f32[:, wi] = today
            f32[:, wi + 1 : wi + 1 + WINDOW_DAYS] = rng.poisson(0.7, (n, WINDOW_DAYS))
    block[:, 3] = rng.integers(0, 2**32, n)
    return np.ascontiguousarray(block)


def generated_segments(n: int, seed: int) -> list[SegmentDef]:
    """n random segments of 1-4 tests each, over the built-in attributes."""
    rnd = random.Random(seed)
    numbers = [
        "orders",
        "total_spent",
        "sessions",
        "page_views",
        "cart_items",
        "cart_value",
        "email_opens",
        "refunds",
    ]
    instants = ["last_seen", "last_order_at", "cart_updated_at", "last_email_open_at"]

    def leaf() -> dict[str, Any]:
        kind = rnd.randrange(8)
        if kind <= 1:
            return {
                "attr": rnd.choice(numbers),
                "op": rnd.choice(["gt", "gte", "lt", "lte"]),
                "value": rnd.choice([1, 2, 3, 5, 10, 50, 100]),
            }
        if kind == 2:
            return {
                "attr": rnd.choice(instants),
                "op": rnd.choice(["within", "older_than"]),
                "value": rnd.choice(["30m", "1h", "1d", "7d", "30d"]),
            }
        if kind == 3:
            return {
                "attr": "country",
                "op": "in",
                "value": rnd.sample(STRINGS["country"], rnd.randint(1, 3)),
            }
        if kind == 4:
            return {
                "attr": rnd.choice(["page_views", "sessions", "product_views"]),
                "window": rnd.choice(["7d", "14d", "30d"]),
                "op": "gte",
                "value": rnd.choice([3, 5, 10, 20]),
            }
        if kind == 5:
            return {"attr": "tags", "op": "has_any", "value": rnd.sample(STRINGS["tags"], 2)}
        if kind == 6:
            return {"attr": rnd.choice(numbers + instants), "op": "exists"}
        return {"attr": "device", "op": rnd.choice(["eq", "ne"]), "value": "mobile"}

    out = []
    for i in range(n):
        tests: list[dict[str, Any]] = [leaf() for _ in range(rnd.randint(1, 4))]
        if rnd.random() < 0.2:
            tests[0] = {"not": tests[0]}
        rule = tests[0] if len(tests) == 1 else {rnd.choice(["all", "all", "any"]): tests}
        out.append(SegmentDef(f"g{i}", rule))
    return out


# -- GrowthBook ---------------------------------------------------------------------------


def to_growthbook(rule: dict[str, Any], now: float) -> dict[str, Any]:
    """The rule as a GrowthBook condition (relative times fixed at `now`, windows as attributes).

    GrowthBook has no "missing means false" for $ne/$nin, so those carry an $exists.
    """
    if "all" in rule:
        return {"$and": [to_growthbook(r, now) for r in rule["all"]]}
    if "any" in rule:
        return {"$or": [to_growthbook(r, now) for r in rule["any"]]}
    if "not" in rule:
        return {"$not": to_growthbook(rule["not"], now)}
    attr, op = rule["attr"], rule["op"]
    value: Any = rule.get("value")
    if "window" in rule:
        attr = f"{attr}__{rule['window']}"
    if op in ("within", "older_than"):
        seconds = {"m": 60, "h": 3600, "d": DAY_SECONDS}[value[-1]] * float(value[:-1])
        return {attr: {"$gt" if op == "within" else "$lte": now - seconds}}
    if op == "exists":
        return {attr: {"$exists": True}}
    if op == "has_any":
        return {attr: {"$elemMatch": {"$in": value}}}
    if isinstance(value, str) and value.endswith("Z"):
        from datetime import datetime

        value = datetime.fromisoformat(value).timestamp()
    gb = {
        "eq": "$eq",
        "ne": "$ne",
        "gt": "$gt",
        "gte": "$gte",
        "lt": "$lt",
        "lte": "$lte",
        "in": "$in",
        "not_in": "$nin",
    }[op]
    if op in ("ne", "not_in"):
        return {"$and": [{attr: {"$exists": True}}, {attr: {gb: value}}]}
    return {attr: {gb: value}}


def growthbook_attributes(
    features: F64, layout: Layout, vocab: Vocabulary, windows: Sequence[tuple[str, int]]
) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for attr in layout.attributes.values():
        x = features[attr.index]
        if attr.kind is Kind.TAGS:
            tags = [
                vocab.of(attr.name).value(int(t))
                for t in features[attr.index : attr.index + attr.slots]
                if t == t
            ]
            if tags:
                attrs[attr.name] = tags
        elif x == x:
            if attr.kind is Kind.CATEGORY:
                attrs[attr.name] = vocab.of(attr.name).value(int(x))
            elif attr.kind is Kind.FLAG:
                attrs[attr.name] = bool(x)
            else:
                attrs[attr.name] = float(x)
    today = math.floor(NOW / DAY_SECONDS)
    f32 = features.view(np.float32)
    for name, days in windows:
        wi = layout[name].window_index
        assert wi is not None
        attrs[f"{name}__{days}d"] = twin.window_sum(f32, wi, days, 0, today)
    return attrs


# -- timing ---------------------------------------------------------------------------------


def per_call(fn: Callable[[], object], budget: float = 0.3) -> float:
    """Seconds per call of fn: the best of 5 runs, each sized to take ~budget/5 seconds."""
    fn()
    calls = 1
    while True:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        spent = time.perf_counter() - t
        if spent > budget / 10 or calls > 1e7:
            break
        calls *= 4
    best = spent / calls
    for _ in range(4):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def cycle(items: Sequence[Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def nxt() -> Any:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return nxt


class Mismatch(Exception):
    pass


def check(name: str, a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64], what: str) -> None:
    if not np.array_equal(a, b):
        raise Mismatch(f"{name}: {what} disagrees with the Numba kernel")


def bench_set(
    name: str,
    segments: list[SegmentDef],
    layout: Layout,
    vocab: Vocabulary,
    profiles: F64,
    batch_rows: int,
    budget: float,
    gb: Any,
) -> list[str]:
    lines = []
    t = time.perf_counter()
    program = build_program(segments, layout, vocab)
    compile_ms = (time.perf_counter() - t) * 1e3
    s = len(segments)
    sample = profiles[:200]
    blobs = [row.tobytes() for row in sample]
    # Answers first: twin, kernel, batch (1 and all cores), NumPy must agree.
    expected = np.zeros((len(sample), program.words), np.uint64)
    for i, f in enumerate(sample):
        evaluate(program, f, NOW, expected[i])
        got = np.zeros(program.words, np.uint64)
        twin.evaluate(program, f, NOW, got)
        check(name, got, expected[i], "the pure-Python twin")
    for parallel in (False, True):
        out = np.zeros((len(sample), program.words), np.uint64)
        evaluate_batch(program, np.ascontiguousarray(sample), NOW, out, parallel=parallel)
        check(name, out, expected, "the batch kernel")
    check(name, evaluate_numpy(program, sample, NOW), expected, "NumPy")

    out1 = np.zeros(program.words, np.uint64)
    rows = cycle(list(sample))
    single = per_call(lambda: evaluate(program, rows(), NOW, out1), budget)
    blob = cycle(blobs)
    from_bytes = per_call(
        lambda: evaluate(program, np.frombuffer(layout.pad(blob()), np.float64), NOW, out1), budget
    )
    slow_rows = cycle(list(sample[:20]))
    py = per_call(lambda: twin.evaluate(program, slow_rows(), NOW, out1), budget)
    block = np.ascontiguousarray(profiles[:batch_rows])
    outb = np.zeros((block.shape[0], program.words), np.uint64)
    one = per_call(lambda: evaluate_batch(program, block, NOW, outb), budget)
    allc = per_call(lambda: evaluate_batch(program, block, NOW, outb, parallel=True), budget)
    npb = block[: min(batch_rows, 20_000)]
    nump = per_call(lambda: evaluate_numpy(program, npb, NOW), budget)
    per_ps = 1e9 / (block.shape[0] * s)
    lines.append(
        f"{name}: {s} segments, {program.code.shape[0]} rows, "
        f"program built in {compile_ms:.2f} ms (no JIT)"
    )
    lines.append(
        f"  one profile, features  {single * 1e6:9.3f} µs   ({single * 1e9 / s:.1f} ns per segment)"
    )
    lines.append(f"  one profile, bytes     {from_bytes * 1e6:9.3f} µs")
    lines.append(f"  pure-Python twin       {py * 1e6:9.1f} µs   = {py / single:.0f}× the kernel")
    if gb is not None and name == "realistic-20":
        rules = [to_growthbook(dict(seg.rule), NOW) for seg in segments]
        windows = [("page_views", 30), ("product_views", 7)]
        attrs = [growthbook_attributes(f, layout, vocab, windows) for f in sample]
        for i, a in enumerate(attrs):
            got_ids = {seg.id for seg, r in zip(segments, rules, strict=True) if gb(a, r)}
            want = {
                sid
                for j, sid in enumerate(program.segment_ids)
                if (int(expected[i, j >> 6]) >> (j & 63)) & 1
            }
            if got_ids != want:
                raise Mismatch(
                    f"{name}: GrowthBook disagrees on profile {i}: {sorted(got_ids ^ want)}"
                )
        nxt = cycle(attrs)
        gbt = per_call(lambda: [gb(a, r) for a in (nxt(),) for r in rules], budget)
        lines.append(
            f"  GrowthBook evalCondition {gbt * 1e6:7.1f} µs   = {gbt / single:.0f}× "
            "the kernel (attributes prepared beforehand, not timed)"
        )
    lines.append(
        f"  batch, 1 core          {one * per_ps:9.2f} ns per profile·segment "
        f"({block.shape[0]} profiles)"
    )
    lines.append(
        f"  batch, all cores       {allc * per_ps:9.2f} ns per profile·segment "
        f"= {one / allc:.1f}× one core"
    )
    lines.append(
        f"  NumPy arrays           {nump * 1e9 / (npb.shape[0] * s):9.2f} ns per "
        f"profile·segment = {nump / npb.shape[0] / (one / block.shape[0]):.1f}× "
        "the batch kernel"
    )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench eval", description=__doc__)
    parser.add_argument(
        "--profiles",
        type=int,
        default=100_000,
        help="profiles in the batch block (default 100 000)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short timings")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="Numba cache directory (default: next to the code)",
    )
    args = parser.parse_args(argv)
    if args.cache_dir is not None:
        warm(args.cache_dir)
    budget = 0.05 if args.quick else 0.4
    n = 2_000 if args.quick else args.profiles
    layout = Schema().layout
    vocab = make_vocab()
    rng = np.random.default_rng(7)
    profiles = random_profiles(layout, n, rng)
    try:
        from growthbook.core import evalCondition

        gb: Any = evalCondition
    except ImportError:
        gb = None
    prebuilt = [SegmentDef(s.id, s.rule, s.priority) for s in load_prebuilt()]
    realistic = [SegmentDef(sid, rule) for sid, rule in REALISTIC]
    sets = [
        ("prebuilt", prebuilt),
        ("realistic-20", realistic),
        ("generated-100", generated_segments(100, 1)),
        ("generated-1000", generated_segments(1000, 2)),
    ]
    print(f"segserver bench eval — {n} profiles, now = 2026-11-22T12:00:00Z")
    stored = cycle([r.tobytes() for r in profiles[:100]])
    decode = per_call(lambda: np.frombuffer(layout.pad(stored()), np.float64), budget)
    print(
        f"decode stored profile → features: {decode * 1e6:.3f} µs "
        f"({layout.size} bytes, np.frombuffer)"
    )
    try:
        for name, segments in sets:
            rows = n if len(segments) <= 100 else min(n, 20_000)
            for line in bench_set(name, segments, layout, vocab, profiles, rows, budget, gb):
                print(line)
    except Mismatch as exc:
        print(f"ERROR: {exc}; no times reported for it")
        return 1
    base = prebuilt + realistic
    t = time.perf_counter()
    build_program(
        [*base, SegmentDef("added", {"attr": "orders", "op": "gte", "value": 7})], layout, vocab
    )
    print(
        f"recompile after adding a segment ({len(base) + 1} segments): "
        f"{(time.perf_counter() - t) * 1e3:.2f} ms, no JIT"
    )
    if gb is None:
        print("GrowthBook: not installed (pip install growthbook) — comparison skipped")
    return 0
