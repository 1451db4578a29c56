"""Hand-built profiles: a readable dict → the feature vector the kernels read.

Used by tests, the shared rule cases (`tests/cases/rules`), the benchmark and the docs,
so a profile is written as it reads:

    {"total_spent": 120.5, "last_order_at": "2026-11-01T10:00:00Z", "country": "DE",
     "tags": ["vip"], "page_views": 40, "page_views.daily": {"0": 3, "-1": 5}}

Instants are ISO 8601 (with an offset) or epoch seconds; dates "YYYY-MM-DD"; category
and tag strings are given codes in `vocab` on first sight; `<attr>.daily` maps a day
offset from `now`'s UTC day (0 today, -1 yesterday) to that day's count, and
`<attr>.head` moves the window's head day (default: today). `"$idhash"` sets the
header's visitor-id hash (buckets); `"$visitor"` sets it from a visitor id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.dsl.validate import instant
from segserver.profile.identity import visitor_hash
from segserver.profile.schema import DAY_SECONDS, H_IDHASH, WINDOW_DAYS, Kind, Layout
from segserver.profile.vocabulary import Vocabulary


def code_of(vocab: Vocabulary, attr: str, value: str) -> int:
    """The code of `value`, adding it to `vocab` when new (as the master copy would)."""
    known = vocab.of(attr)
    code = known.code(value)
    if code is None:
        code = len(known.values) + 1
        vocab.add(attr, value, code)
    return code


def build_features(
    layout: Layout, vocab: Vocabulary, values: Mapping[str, Any], now: float
) -> npt.NDArray[np.float64]:
    """A writable float64 feature vector of `layout` holding `values` (see module doc)."""
    f = np.frombuffer(layout.template, dtype=np.float64).copy()
    f32 = f.view(np.float32)
    today = math.floor(now / DAY_SECONDS)
    for key, value in values.items():
        if key == "$idhash":
            f[H_IDHASH] = float(value)
            continue
        if key == "$visitor":
            f[H_IDHASH] = float(visitor_hash(value))
            continue
        name, _, part = key.partition(".")
        attr = layout[name]
        if part:
            wi = attr.window_index
            if wi is None:
                raise ValueError(f"{name} keeps no window")
            if part == "head":
                f32[wi] = today + int(value)
                continue
            head = int(f32[wi]) if f32[wi] else today
            f32[wi] = head
            for offset, count in value.items():
                day = today + int(offset)
                if not head - WINDOW_DAYS < day <= head:
                    raise ValueError(f"{key}: day {offset} is outside the window")
                f32[wi + 1 + day % WINDOW_DAYS] = count
            continue
        if value is None:
            continue
        if attr.kind is Kind.TAGS:
            for i, tag in enumerate(value):
                f[attr.index + i] = code_of(vocab, name, tag)
        elif attr.kind is Kind.CATEGORY:
            f[attr.index] = code_of(vocab, name, value)
        elif attr.kind is Kind.FLAG:
            f[attr.index] = 1.0 if value else 0.0
        elif attr.kind in (Kind.TIMESTAMP, Kind.DATE):
            f[attr.index] = instant(value, key, date_only=attr.kind is Kind.DATE)
        else:
            f[attr.index] = float(value)
    return f
