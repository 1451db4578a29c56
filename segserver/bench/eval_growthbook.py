"""The same rules as GrowthBook conditions, to compare with its `evalCondition`.

Only used by `segserver bench eval` when the optional `growthbook` package is installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segserver.bench.eval_sets import F64, NOW
from segserver.engine import reference as twin
from segserver.profile.schema import DAY_SECONDS, Kind, Layout
from segserver.profile.vocabulary import Vocabulary


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
