"""The profile byte layout: offsets, template, append-only growth, decoding."""

from __future__ import annotations

import itertools
import math
import struct

import numpy as np
import pytest

from segserver.errors import ValidationError
from segserver.profile import codec
from segserver.profile.schema import (
    BUILTIN_ATTRIBUTES,
    HEADER_BYTES,
    WINDOW_BYTES,
    Kind,
    Schema,
)
from segserver.profile.vocabulary import Vocabulary

REQUIRED = [
    "first_seen", "last_seen", "sessions", "page_views", "product_views", "cart_items",
    "cart_value", "cart_updated_at", "orders", "total_spent", "last_order_at", "email_opens",
    "email_clicks", "emails_received", "support_tickets", "signup_at", "birthday", "country",
    "region", "device", "language", "source", "utm_source", "lifecycle_stage", "tags",
]  # fmt: skip


def test_builtin_attributes_cover_the_issue() -> None:
    names = {a.name for a in BUILTIN_ATTRIBUTES}
    assert set(REQUIRED) <= names


def test_offsets_are_aligned_and_disjoint() -> None:
    layout = Schema().layout
    spans = []
    for attr in layout.attributes.values():
        assert attr.offset % 8 == 0
        spans.append((attr.offset, attr.offset + 8 * attr.slots))
        if attr.window is not None:
            assert attr.window % 8 == 0
            spans.append((attr.window, attr.window + WINDOW_BYTES))
    spans.sort()
    assert spans[0][0] == HEADER_BYTES
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start
    assert spans[-1][1] == layout.size


def test_template_is_missing_everywhere() -> None:
    layout = Schema().layout
    f = np.frombuffer(layout.template, np.float64)
    assert f[0] == 1.0  # format
    for attr in layout.attributes.values():
        assert all(math.isnan(v) for v in f[attr.index : attr.index + attr.slots])
        if attr.window_index is not None:
            f32 = f.view(np.float32)
            assert not f32[attr.window_index : attr.window_index + 36].any()


def test_declared_attributes_append_and_old_profiles_pad() -> None:
    old = Schema.from_json({"attributes": [{"name": "points", "kind": "number"}]})
    new = Schema.from_json(
        {
            "attributes": [
                {"name": "points", "kind": "number"},
                {"name": "tier", "kind": "category"},
            ],
            "events": [{"name": "wish", "window": True}],
        }
    )
    new.check_extends(old)
    for name, attr in old.layout.attributes.items():
        assert new.layout[name] == attr
    blob = bytearray(old.layout.template)
    struct.pack_into("<d", blob, old.layout["points"].offset, 42.0)
    f = codec.features(bytes(blob), new.layout)
    assert len(f) == new.layout.size // 8
    assert f[new.layout["points"].index] == 42.0
    assert math.isnan(f[new.layout["tier"].index])
    assert new.layout["wish_count"].window is not None
    with pytest.raises(ValidationError, match="appended"):
        Schema.from_json({}).check_extends(old)  # removing is not appending
    with pytest.raises(ValidationError, match="appended"):
        Schema.from_json({"attributes": [{"name": "points", "kind": "flag"}]}).check_extends(old)


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"attributes": [{"name": "country", "kind": "category"}]}, "schema.attributes[0].name"),
        ({"attributes": [{"name": "X", "kind": "number"}]}, "schema.attributes[0].name"),
        ({"attributes": [{"name": "x", "kind": "text"}]}, "schema.attributes[0].kind"),
        ({"attributes": [{"name": "x", "kind": "flag", "window": True}]}, "window"),
        ({"attributes": "x"}, "schema.attributes"),
        ({"events": [{"name": "a b"}]}, "schema.events[0].name"),
        ({"colour": 1}, "schema: unknown field"),
        (
            {"attributes": [{"name": "x", "kind": "number"}, {"name": "x", "kind": "number"}]},
            "declared twice",
        ),
    ],
)
def test_bad_schema_names_the_path(schema: object, path: str) -> None:
    with pytest.raises(ValidationError) as err:
        Schema.from_json(schema)  # type: ignore[arg-type]
    assert path in err.value.message


def test_decode_to_json() -> None:
    layout = Schema().layout
    blob = bytearray(layout.template)
    struct.pack_into("<d", blob, layout["page_views"].offset, 3.0)
    struct.pack_into("<d", blob, layout["country"].offset, 2.0)
    struct.pack_into("<d", blob, layout["last_seen"].offset, 86400.0 * 20000)
    w = layout["page_views"].window
    assert w is not None
    struct.pack_into("<ff", blob, w, 20000.0, 0.0)
    struct.pack_into("<f", blob, w + 4 + (20000 % 35) * 4, 3.0)
    vocab = Vocabulary({"country": ["AT", "DE"]})
    out = codec.to_json(bytes(blob), layout, vocab)
    assert out["attributes"] == {
        "page_views": 3,
        "country": "DE",
        "last_seen": "2024-10-04T00:00:00Z",
    }
    assert out["daily"] == {"page_views": {"2024-10-04": 3.0}}
    assert layout["tags"].kind is Kind.TAGS


def test_features_block_is_columnar_ready() -> None:
    layout = Schema().layout
    old = layout.template[:-WINDOW_BYTES]  # an older, shorter profile gets padded
    block = codec.features_block([layout.template, old], layout)
    assert block.shape == (2, layout.size // 8)
    assert block.flags.c_contiguous
