"""Stored profile bytes → the engine's feature vector, and → JSON by attribute name.

Stored bytes are format 2 (segserver/profile/packed.py) or, until a visitor's next
write, format 1; both decode to the same float64 vector (schema.py), so the engine,
bulk recompute and analytics never see the stored format.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.profile import packed
from segserver.profile.schema import (
    DAY_SECONDS,
    H_IDHASH,
    H_ORDINAL,
    H_VERSION,
    WINDOW_DAYS,
    Kind,
    Layout,
)
from segserver.profile.vocabulary import Vocabulary


def features(blob: bytes, layout: Layout) -> npt.NDArray[np.float64]:
    """The float64 feature vector (layout.size // 8) of a stored profile; b"" (no
    profile) gives the empty profile. Read-only unless freshly decoded."""
    return packed.features(blob, layout)


def features_block(blobs: list[bytes], layout: Layout) -> npt.NDArray[np.float64]:
    """N stored profiles as one C-contiguous (N, layout.size // 8) float64 block."""
    return packed.features_block(blobs, layout)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def window_days(f32: npt.NDArray[np.float32], index: int) -> dict[str, float]:
    """Non-zero days of one window block, as {YYYY-MM-DD: amount}."""
    head = int(f32[index])
    out: dict[str, float] = {}
    for day in range(max(head - WINDOW_DAYS + 1, 0), head + 1):
        amount = float(f32[index + 1 + day % WINDOW_DAYS])
        if amount:
            out[datetime.fromtimestamp(day * DAY_SECONDS, UTC).date().isoformat()] = float(
                f"{amount:.7g}"
            )
    return out


def to_json(blob: bytes, layout: Layout, vocab: Vocabulary) -> dict[str, Any]:
    """A decoded profile: attributes that have a value, by name, and daily windows."""
    f64 = features(blob, layout)
    f32 = f64.view(np.float32)
    attrs: dict[str, Any] = {}
    windows: dict[str, dict[str, float]] = {}
    for attr in layout.attributes.values():
        raw = f64[attr.index : attr.index + attr.slots]
        if attr.window_index is not None:
            days = window_days(f32, attr.window_index)
            if days:
                windows[attr.name] = days
        if attr.kind is Kind.TAGS:
            tags = [vocab.of(attr.name).value(int(c)) for c in raw if not math.isnan(c)]
            if tags:
                attrs[attr.name] = tags
            continue
        value = float(raw[0])
        if math.isnan(value):
            continue
        if attr.kind is Kind.TIMESTAMP:
            attrs[attr.name] = _iso(value)
        elif attr.kind is Kind.DATE:
            attrs[attr.name] = _iso(value)[:10]
        elif attr.kind is Kind.CATEGORY:
            attrs[attr.name] = vocab.of(attr.name).value(int(value))
        elif attr.kind is Kind.FLAG:
            attrs[attr.name] = bool(value)
        else:
            attrs[attr.name] = int(value) if value.is_integer() else value
    return {
        "version": int(f64[H_VERSION]),
        "ordinal": None if math.isnan(f64[H_ORDINAL]) else int(f64[H_ORDINAL]),
        "id_hash": None if math.isnan(f64[H_IDHASH]) else int(f64[H_IDHASH]),
        "attributes": attrs,
        "daily": windows,
    }


def unknown_codes(blob: bytes, layout: Layout, vocab: Vocabulary) -> bool:
    """True if the profile holds a dictionary code `vocab` does not know yet."""
    f64 = features(blob, layout)
    for attr in layout.attributes.values():
        if attr.kind in (Kind.CATEGORY, Kind.TAGS):
            for c in f64[attr.index : attr.index + attr.slots]:
                if not math.isnan(c) and vocab.of(attr.name).value(int(c)) is None:
                    return True
    return False
