"""Format 2 (segserver/profile/packed.py): the Numba kernels against a plain-Python
reading of the format's definition, round trips, foreign MessagePack and bad bytes."""

from __future__ import annotations

import math
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segserver.profile import codec, packed
from segserver.profile.schema import WINDOW_DAYS, Schema
from segserver.profile.vocabulary import Vocabulary

SCHEMA = Schema.from_json(
    {
        "attributes": [{"name": "points", "kind": "number"}, {"name": "tier", "kind": "category"}],
        "events": [{"name": "wish", "window": True}],
    }
)
LAYOUT = SCHEMA.layout
F = LAYOUT.size // 8
SCALARS = [int(s) for s in np.flatnonzero(LAYOUT.slot_kinds == packed.SLOT_SCALAR)]
WINDOWS = [int(s) for s in np.flatnonzero(LAYOUT.slot_kinds == packed.SLOT_WINDOW)]


def reference(blob: bytes) -> np.ndarray:
    """The format as its docstring defines it, read with msgpack-python."""
    f = np.array(LAYOUT.features_template)
    if not blob:
        return f
    if blob[0] == 0:
        return np.frombuffer(LAYOUT.pad(blob), np.float64).copy()
    fmt, _, _, idhash, version, ordinal = struct.unpack_from("<BBHIdd", blob)
    assert fmt == 2
    f[1], f[2], f[3] = version, ordinal, idhash
    body = msgpack.unpackb(blob[24:], strict_map_key=False, raw=True)
    items = body.items() if isinstance(body, dict) else enumerate(body, 1)
    f32 = f.view(np.float32)
    for slot, item in items:
        value = msgpack.unpackb(item) if isinstance(item, bytes) else item
        if isinstance(value, list):
            head = -value[0] if value[0] < 0 else value[0]
            f32[2 * slot] = head
            dense = value[0] < 0
            pairs = enumerate(value[1:]) if dense else zip(value[1::2], value[2::2], strict=True)
            for age, amount in pairs:
                f32[2 * slot + 1 + (int(head) - age) % WINDOW_DAYS] = amount
        else:
            f[slot] = math.nan if value is None else float(value)
    return f


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


finite = st.one_of(
    st.integers(0, 127),
    st.integers(-(2**40), 2**40),
    st.integers(2**32, 2**62),
    st.floats(-1e6, 1e6, width=32),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(1.6e9, 2.1e9),  # timestamps with fractions
).map(float)


@st.composite
def vectors(draw: st.DrawFn) -> np.ndarray:
    f = np.array(LAYOUT.features_template)
    f[1] = draw(st.integers(0, 2**31))
    f[2] = draw(st.sampled_from([math.nan, 0.0, 7.0, 123456.0]))
    f[3] = draw(st.integers(0, 2**32 - 1))
    for slot in SCALARS:
        if draw(st.integers(0, 3)) == 0:
            f[slot] = draw(finite)
    f32 = f.view(np.float32)
    for slot in WINDOWS:
        if draw(st.booleans()):
            continue
        head = draw(st.integers(1, 30000))
        f32[2 * slot] = head
        for age in draw(st.sets(st.integers(0, WINDOW_DAYS - 1), max_size=WINDOW_DAYS)):
            amount = draw(
                st.one_of(st.integers(1, 2**20).map(float), st.floats(2**-6, 1e5, width=32))
            )
            f32[2 * slot + 1 + (head - age) % WINDOW_DAYS] = amount
    return f


@settings(max_examples=300, deadline=None)
@given(vectors())
def test_round_trip_and_reference_agree(f: np.ndarray) -> None:
    blob = packed.encode(f, LAYOUT)
    assert blob[0] == packed.FORMAT
    assert same(codec.features(blob, LAYOUT), f)
    assert same(reference(blob), f)


@settings(max_examples=50, deadline=None)
@given(st.lists(vectors(), min_size=1, max_size=8))
def test_block_equals_one_by_one_with_both_formats(rows: list[np.ndarray]) -> None:
    blobs = packed.encode_block(np.stack(rows), LAYOUT)
    blobs[0] = rows[0].tobytes()  # a format-1 profile among format-2 ones
    blobs.append(b"")  # no profile
    block = codec.features_block(blobs, LAYOUT)
    assert block.shape == (len(rows) + 1, F) and block.flags.c_contiguous
    for i, row in enumerate(rows):
        assert same(block[i], row)
    assert same(block[-1], LAYOUT.features_template)


def test_foreign_messagepack_shapes_decode_like_the_definition() -> None:
    idx = LAYOUT["page_views"].index
    window, wish = LAYOUT["page_views"].window, LAYOUT["wish_count"].window
    assert window is not None and wish is not None
    body = {
        idx: 2**40,  # uint64
        LAYOUT["points"].index: -(2**33),  # int64
        LAYOUT["cart_value"].index: 0.1,  # float64
        LAYOUT["orders"].index: None,  # nil: missing
        LAYOUT["identified"].index: True,
        window // 8: [20000, 0, 3, 4, 1.5],  # a bare array (not packed in a string)
        wish // 8: msgpack.packb([-20000, 1, 0, 2]),  # dense, in bytes
    }
    for extra in range(200, 220):  # more than 16 entries: map16
        if extra < F and LAYOUT.slot_kinds[extra] == packed.SLOT_SCALAR:
            body[extra] = extra
    blob = struct.pack("<BBHIdd", 2, 0, 0, 99, 3.0, 5.0) + msgpack.packb(body)
    got = codec.features(blob, LAYOUT)
    assert same(got, reference(blob))
    assert got[idx] == 2**40 and got[LAYOUT["points"].index] == -(2**33)
    assert math.isnan(got[LAYOUT["orders"].index])
    daily = codec.to_json(blob, LAYOUT, Vocabulary())["daily"]
    assert daily["page_views"] == {"2024-10-04": 3.0, "2024-09-30": 1.5}


def test_no_profile_is_the_template_and_read_only() -> None:
    f = codec.features(b"", LAYOUT)
    assert same(f, LAYOUT.features_template)
    assert not f.flags.writeable
    assert math.isnan(f[2])  # no ordinal


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no map
        b"\x81\x05",  # a key without a value
        b"\x81\x05\xcb\x00",  # a float64 cut short
        b"\x81\x07\xa4\x92\x01\x00",  # a window string longer than its bytes
        b"\x81\x07\x92\x01\x02",  # a sparse window with an age but no amount
        b"\x81\x07\x81\x01\x02",  # a map where a window goes
        b"\x81\x05\xa1x",  # a string where a number goes
        b"\x81\x05\x01\x00",  # trailing bytes
        b"\x81\xcd\x10\x00\x92\x01\x00",  # a window beyond the layout
    ],
)
def test_malformed_bytes_raise(body: bytes) -> None:
    blob = struct.pack("<BBHIdd", 2, 0, 0, 1, 1.0, 0.0) + body
    with pytest.raises(ValueError, match="malformed"):
        codec.features(blob, LAYOUT)
    with pytest.raises(ValueError, match="malformed"):
        codec.features_block([blob], LAYOUT)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise(tail: bytes) -> None:
    blob = struct.pack("<BBHIdd", 2, 0, 0, 1, 1.0, 0.0) + tail
    try:
        f = codec.features(blob, LAYOUT)
    except ValueError:
        return
    assert f.shape == (F,)


def test_window_encoding_picks_the_smaller_form() -> None:
    f = np.array(LAYOUT.features_template)
    f32 = f.view(np.float32)
    spread, daily = (LAYOUT[a].window_index for a in ("sessions", "page_views"))
    assert spread is not None and daily is not None
    f32[spread], f32[daily] = 20000, 20000
    for age in (0, 30):  # two days a month apart: sparse
        f32[spread + 1 + (20000 - age) % WINDOW_DAYS] = 1
    for age in range(20):  # every day: dense
        f32[daily + 1 + (20000 - age) % WINDOW_DAYS] = 2
    body = msgpack.unpackb(packed.encode(f, LAYOUT)[24:], strict_map_key=False, raw=True)
    assert msgpack.unpackb(body[spread // 2]) == [20000, 0, 1, 30, 1]
    assert msgpack.unpackb(body[daily // 2]) == [-20000] + [2] * 20


def test_layout_helpers_for_the_script_and_the_encoder() -> None:
    assert LAYOUT.window_slots == ",".join(str(s) for s in WINDOWS).encode()
    assert [LAYOUT[a].window // 8 for a in LAYOUT.windowed] == WINDOWS
    assert len(SCALARS) == sum(a.slots for a in LAYOUT.attributes.values())
    assert packed.max_bytes(LAYOUT) > LAYOUT.size  # every slot set, every window full


def test_the_wrappers_call_only_the_signatures_a_warm_up_compiles() -> None:
    f = np.array(LAYOUT.features_template)
    f[5] = 1.5
    blob = packed.encode(f, LAYOUT)
    codec.features(blob, LAYOUT)
    codec.features_block([blob, blob], LAYOUT)
    declared = {(d, tuple(sig)) for d, sig in packed.SIGNATURES}
    for dispatcher in (packed.decode_one, packed.decode_rows):
        for sig in dispatcher.signatures:
            assert (dispatcher, tuple(sig)) in declared, sig
