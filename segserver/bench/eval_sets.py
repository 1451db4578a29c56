"""The rule sets and profiles `segserver bench eval` and the engine's tests run on.

`REALISTIC`: 20 segments a shop would define (spend, recency, carts, countries,
devices, windowed counts, tags, signup dates); `generated_segments(n)`: n random
segments of 1-4 tests over the built-in attributes; `random_profiles`: profiles of
the built-in layout with a realistic mix of present, missing and recent values.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.bench.features import code_of
from segserver.engine import SegmentDef
from segserver.profile.schema import DAY_SECONDS, WINDOW_DAYS, Kind, Layout
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
