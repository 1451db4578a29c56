"""The stored profile (format 2): a small header and a MessagePack map of what the
visitor has; decoded by Numba kernels into the engine's feature vector (schema.py).

    offset 0   u8   FORMAT = 2 (a format-1 profile starts with the float64 1.0: byte 0 is 0)
           1   u8   reserved (0)
           2   u16  TTL day  the day (since the epoch) the key's TTL was last set
           4   u32  IDHASH   32-bit hash of the visitor id
           8   f64  VERSION  event batches applied
          16   f64  ORDINAL  dense per-shard number; where format 1 kept it, so
                             lua/delete_visitor.lua and lua/set_static_members.lua read
                             both formats at byte 16
          24   a MessagePack map {slot: value}; `slot` is the float64 index of the value in
               the feature vector (`Attribute.index`, or `window // 8` for a window):
               number  a scalar (tags: one per slot). MessagePack keeps integers in their
                       smallest int form (1 byte up to 127) and Redis' cmsgpack writes
                       other values as float32 when exact, else float64. Absent = missing.
               string  a daily window block: a MessagePack array in a string (so that
                       lua/apply_events.lua unpacks only the windows an event touches):
                       sparse [head_day, age, amount, age, amount ...] (ages 0..34
                       ascending, amounts non-zero) or, when more than half of the days
                       are active, dense [-head_day, amount at age 0, age 1, ...]; the
                       amount of day d sits at age head_day - d (head_day > 0). A bare
                       array is read the same way.

Only what a visitor has takes bytes: a typical demo visitor is ~100-200 bytes where
format 1 took the whole layout (1,272 bytes for the demo site, 840 of them six 35-day
float32 rings). New attributes need no migration: a slot nobody wrote is absent.
lua/apply_events.lua reads format 1 and writes format 2 (the upgrade on next write);
the decoders here read both.

The kernels are plain loops writing into the caller's `out`; they never raise on the
bytes: a malformed profile is reported by a status, and the Python wrappers raise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import types as nt

from segserver.profile.packed_read import (
    CORRUPT,
    F64,
    FORMAT,
    HEADER_BYTES,
    OK,
    _decode,
    decode_one,
    decode_rows,
)
from segserver.profile.packed_write import encode_rows
from segserver.profile.schema import WINDOW_DAYS, Layout

__all__ = [
    "CORRUPT",
    "FORMAT",
    "HEADER_BYTES",
    "OK",
    "decode_one",
    "decode_rows",
    "encode",
    "encode_block",
    "encode_rows",
    "features",
    "features_block",
    "max_bytes",
]

# Slot kinds of the encoder (Layout.slot_kinds).
SLOT_SCALAR, SLOT_WINDOW = 1, 2


def max_bytes(layout: Layout) -> int:
    """An upper bound of one encoded profile: header, map header, per slot a key and a
    number (3 + 9 bytes), per window a key, a str and an array header, head and
    35 × (1 + 9)."""
    windows = len(layout.windowed)
    return HEADER_BYTES + 5 + 12 * (layout.size // 8) + windows * (14 + WINDOW_DAYS * 10)


# --- compiling ------------------------------------------------------------------------

_BYTES = nt.Bytes(nt.uint8, 1, "C", readonly=True)
_F64_RO = nt.Array(nt.float64, 1, "C", readonly=True)

#: The signatures `features` and `features_block` call (stored bytes arrive as `bytes`,
#: the template is a read-only view): what a warm-up compiles, as `engine.SIGNATURES`.
SIGNATURES: tuple[tuple[Any, tuple[Any, ...]], ...] = (
    (decode_one, (_BYTES, _F64_RO, nt.Array(nt.float64, 1, "C"))),
    (
        decode_rows,
        (
            _BYTES,
            nt.Array(nt.int64, 1, "C"),
            _F64_RO,
            nt.Array(nt.float64, 2, "C"),
            nt.Array(nt.uint8, 1, "C"),
        ),
    ),
)
#: Every dispatcher of this module (a warm-up re-points their on-disk caches).
DISPATCHERS = (_decode, decode_one, decode_rows, encode_rows)


# --- wrappers ------------------------------------------------------------------------


def features(blob: bytes, layout: Layout) -> F64:
    """The feature vector of a stored profile of either format ("" = no profile)."""
    if not blob:
        return layout.features_template
    if blob[0] == 0:  # format 1 is the vector itself (zero-copy)
        return np.frombuffer(layout.pad(blob), np.float64)
    out = np.empty(layout.size // 8, np.float64)
    status = decode_one(blob, layout.features_template, out)
    if status != OK:
        raise ValueError(f"a stored profile of {len(blob)} bytes is malformed")
    return out


def features_block(blobs: list[bytes], layout: Layout) -> F64:
    """N stored profiles of either format as one C-contiguous (N, layout.size // 8) block."""
    n, size = len(blobs), layout.size
    lens = np.fromiter(map(len, blobs), np.int64, n)
    buf = b"".join(blobs)
    if n and (lens == size).all() and not np.frombuffer(buf, np.uint8)[::size].any():
        # every one format 1 of this layout (before their next write): the bytes are the
        # block, as they always were (a view, no copy)
        return np.frombuffer(buf, np.float64).reshape(n, size // 8)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=starts[1:])
    out = np.empty((n, size // 8), np.float64)
    status = np.empty(n, np.uint8)
    decode_rows(buf, starts, layout.features_template, out, status)
    if status.any():
        raise ValueError(f"stored profile {int(np.argmax(status))} of the block is malformed")
    return out


def encode_block(block: F64, layout: Layout) -> list[bytes]:
    """Format-2 bytes of each row of an (N, layout.size // 8) feature block."""
    if block.ndim != 2 or block.shape[1] != layout.size // 8:
        raise ValueError("encode_block: block must be N × layout.size // 8")
    block = np.ascontiguousarray(block, np.float64)
    buf = np.empty(block.shape[0] * max_bytes(layout), np.uint8)
    ends = np.empty(block.shape[0], np.int64)
    kinds = layout.slot_kinds
    scalars = np.flatnonzero(kinds == SLOT_SCALAR).astype(np.int64)
    windows = np.flatnonzero(kinds == SLOT_WINDOW).astype(np.int64)
    encode_rows(block, scalars, windows, buf, ends)
    data = buf[: ends[-1] if len(ends) else 0].tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [data[s:e] for s, e in zip(starts, ends.tolist(), strict=True)]


def encode(features: F64, layout: Layout) -> bytes:
    """Format-2 bytes of one feature vector."""
    return encode_block(features.reshape(1, -1), layout)[0]
