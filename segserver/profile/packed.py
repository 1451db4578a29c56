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

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba import types as nt

from segserver.profile.schema import HEADER_SLOTS, WINDOW_DAYS, Layout

FORMAT = 2
HEADER_BYTES = 24
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

# Status of one decoded profile.
OK, FORMAT_1, CORRUPT = 0, 1, 2
# Slot kinds of the encoder (Layout.slot_kinds).
SLOT_SCALAR, SLOT_WINDOW = 1, 2

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
_WINDOW_SLOTS = (WINDOW_DAYS + 1) // 2  # float64 slots of a window block (18)


# --- reading --------------------------------------------------------------------------
# `u64`/`f64` (and `u32`/`f32`) are one-item views of the same 8 (4) bytes, made once per
# kernel call: storing the bits and reading the float reinterprets them.


@_inline
def _be16(buf: bytes, p: int) -> int:
    return (int(buf[p]) << 8) | int(buf[p + 1])


@_inline
def _be32(buf: bytes, p: int) -> int:
    return (int(buf[p]) << 24) | (int(buf[p + 1]) << 16) | (int(buf[p + 2]) << 8) | int(buf[p + 3])


@_inline
def _be64(buf: bytes, p: int) -> np.uint64:
    return (np.uint64(_be32(buf, p)) << np.uint64(32)) | np.uint64(_be32(buf, p + 4))


@_inline
def _le64(buf: bytes, p: int) -> np.uint64:
    v = np.uint64(0)
    for i in range(7, -1, -1):
        v = (v << np.uint64(8)) | np.uint64(buf[p + i])
    return v


@_inline
def _number(
    buf: bytes, p: int, end: int, u64: Any, f64: Any, u32: Any, f32: Any
) -> tuple[float, int]:
    """A MessagePack number (or nil/bool) at `p`: (value, next position); -1 if none."""
    if p >= end:
        return 0.0, -1
    t = buf[p]
    if t < 0x80:  # positive fixint: counters, codes, ages
        return float(t), p + 1
    if t >= 0xE0:  # negative fixint
        return float(int(t) - 256), p + 1
    if t == 0xCB:
        if p + 9 > end:
            return 0.0, -1
        u64[0] = _be64(buf, p + 1)
        return f64[0], p + 9
    if t == 0xCA:
        if p + 5 > end:
            return 0.0, -1
        u32[0] = np.uint32(_be32(buf, p + 1))
        return float(f32[0]), p + 5
    if 0xCC <= t <= 0xD3:
        n = 1 << ((t - 0xCC) & 3)
        if p + 1 + n > end:
            return 0.0, -1
        if n == 1:
            v = int(buf[p + 1])
            return float(v - 256 if t == 0xD0 and v >= 128 else v), p + 2
        if n == 2:
            v = _be16(buf, p + 1)
            return float(v - 65536 if t == 0xD1 and v >= 32768 else v), p + 3
        if n == 4:
            v = _be32(buf, p + 1)
            return float(v - 4294967296 if t == 0xD2 and v >= 2147483648 else v), p + 5
        u = _be64(buf, p + 1)
        if t == 0xD3 and u >= np.uint64(1) << np.uint64(63):
            return -float(~u + np.uint64(1)), p + 9
        return float(u), p + 9
    if t == 0xC0:  # nil: missing
        return math.nan, p + 1
    if 0xC2 <= t <= 0xC3:  # false, true
        return float(t - 0xC2), p + 1
    return 0.0, -1


@_inline
def _container(buf: bytes, p: int, end: int) -> tuple[int, int, int]:
    """(kind 1 map / 2 array / 0 not a container, length, next position)."""
    if p >= end:
        return 0, 0, -1
    t = buf[p]
    if 0x80 <= t <= 0x8F:
        return 1, int(t & 0x0F), p + 1
    if 0x90 <= t <= 0x9F:
        return 2, int(t & 0x0F), p + 1
    if 0xDC <= t <= 0xDF:  # array16, array32, map16, map32
        kind = 2 if t <= 0xDD else 1
        width = 2 if t % 2 == 0 else 4
        if p + 1 + width > end:
            return 0, 0, -1
        n = _be16(buf, p + 1) if width == 2 else _be32(buf, p + 1)
        return kind, n, p + 1 + width
    return 0, 0, p


@_inline
def _string(buf: bytes, p: int, end: int) -> tuple[int, int]:
    """(length, start of the bytes) of a MessagePack str/bin at `p`; (-1, p) if none."""
    t = buf[p]
    if 0xA0 <= t <= 0xBF:  # fixstr
        n, q = int(t & 0x1F), p + 1
    else:
        if 0xD9 <= t <= 0xDB:  # str8, str16, str32
            width = 1 << (t - 0xD9)
        elif 0xC4 <= t <= 0xC6:  # bin8, bin16, bin32
            width = 1 << (t - 0xC4)
        else:
            return -1, p
        if p + 1 + width > end:
            return -1, p
        if width == 1:
            n = int(buf[p + 1])
        elif width == 2:
            n = _be16(buf, p + 1)
        else:
            n = _be32(buf, p + 1)
        q = p + 1 + width
    if q + n > end:
        return -1, p
    return n, q


@_inline
def _window(buf: bytes, p: int, end: int, n: int, out32: Any, at: int, u64: Any, f64: Any,
            u32: Any, f32: Any) -> int:  # fmt: skip
    """Decode a window array of `n` items at `p` into the block at float32 index `at`."""
    first, p = _number(buf, p, end, u64, f64, u32, f32)
    if p < 0 or first != first or n < 1:
        return -1
    dense = first < 0
    head = -first if dense else first
    out32[at] = head
    day0 = int(head)
    if dense:
        for age in range(n - 1):
            amount, p = _number(buf, p, end, u64, f64, u32, f32)
            if p < 0:
                return -1
            if age < WINDOW_DAYS:
                out32[at + 1 + (day0 - age) % WINDOW_DAYS] = amount
        return p
    if (n - 1) % 2:  # a dangling age: malformed
        return -1
    for _ in range((n - 1) // 2):
        days_back, p = _number(buf, p, end, u64, f64, u32, f32)
        if p < 0:
            return -1
        amount, p = _number(buf, p, end, u64, f64, u32, f32)
        if p < 0:
            return -1
        if 0 <= days_back < WINDOW_DAYS:
            out32[at + 1 + (day0 - int(days_back)) % WINDOW_DAYS] = amount
    return p


@_jit
def _decode(buf: bytes, start: int, end: int, out: F64, scratch: U8) -> int:
    """Decode one profile buf[start:end] into `out` (holding the template); a status.
    `scratch` is 8 bytes aligned (uint64[1] viewed as bytes)."""
    if end == start:
        return OK  # no profile: the template
    if buf[start] != FORMAT:
        return FORMAT_1 if buf[start] == 0 else CORRUPT
    if end - start < HEADER_BYTES + 1:
        return CORRUPT
    u64 = scratch.view(np.uint64)
    f64 = scratch.view(np.float64)
    u32 = scratch[:4].view(np.uint32)
    f32 = scratch[:4].view(np.float32)
    out[3] = float(_le64(buf, start) >> np.uint64(32))  # IDHASH: bytes 4..7
    u64[0] = _le64(buf, start + 8)
    out[1] = f64[0]
    u64[0] = _le64(buf, start + 16)
    out[2] = f64[0]
    kind, n, p = _container(buf, start + HEADER_BYTES, end)
    if kind == 0:
        return CORRUPT
    size = out.shape[0]
    out32 = out.view(np.float32)
    for i in range(n):
        if kind == 1:
            if p < end and buf[p] < 0x80:  # most keys: a positive fixint
                slot = int(buf[p])
                p += 1
            else:
                key, p = _number(buf, p, end, u64, f64, u32, f32)
                slot = int(key) if key == key else -1
            if p < 0 or p >= end:
                return CORRUPT
        else:  # an array stands for keys 1..n (how cmsgpack writes a table keyed 1..n)
            slot = i + 1
        t = buf[p]
        if t < 0x80 or (t >= 0xC0 and not (0xC4 <= t <= 0xC6 or 0xD9 <= t <= 0xDF)):
            value, p = _number(buf, p, end, u64, f64, u32, f32)  # a scalar
            if HEADER_SLOTS <= slot < size:
                out[slot] = value
        else:  # a window: an array, or an array packed in a string
            inner, q = _string(buf, p, end)
            stop = end if inner < 0 else q + inner
            vkind, vn, q = _container(buf, p if inner < 0 else q, stop)
            if vkind != 2 or slot < HEADER_SLOTS or slot + _WINDOW_SLOTS > size:
                return CORRUPT
            p = _window(buf, q, stop, vn, out32, 2 * slot, u64, f64, u32, f32)
            if inner >= 0 and p != stop:
                return CORRUPT
        if p < 0:
            return CORRUPT
    return OK if p == end else CORRUPT


@_jit
def decode_one(buf: bytes, template: F64, out: F64) -> int:
    """Decode one stored profile `buf` into `out` (float64[layout.size // 8]); a status."""
    out[:] = template
    scratch = np.empty(1, np.uint64).view(np.uint8)
    return _decode(buf, 0, len(buf), out, scratch)


@_jit
def decode_rows(buf: bytes, starts: I64, template: F64, out: F64, status: U8) -> None:
    """Profile i is buf[starts[i]:starts[i + 1]]; its features go to out[i]."""
    scratch = np.empty(1, np.uint64).view(np.uint8)
    for i in range(out.shape[0]):
        row = out[i]
        row[:] = template
        status[i] = _decode(buf, starts[i], starts[i + 1], row, scratch)


# --- writing (demo seeding, tests; the event path writes through Lua) -------------------


@_inline
def _put_be(buf: U8, p: int, tag: int, u: np.uint64, n: int) -> int:
    """A tag byte and `n` big-endian bytes of `u`; the position after."""
    buf[p] = tag
    for i in range(n):
        buf[p + n - i] = np.uint8((u >> np.uint64(8 * i)) & np.uint64(0xFF))
    return p + 1 + n


@_inline
def _put_le(buf: U8, p: int, u: np.uint64, n: int) -> None:
    for i in range(n):
        buf[p + i] = np.uint8((u >> np.uint64(8 * i)) & np.uint64(0xFF))


@_inline
def _put_number(buf: U8, p: int, x: float, u64: Any, f64: Any, u32: Any, f32: Any) -> int:
    """`x` as Redis' cmsgpack writes a Lua number: ints smallest, else float32 if exact."""
    if x == math.floor(x) and -9.223372036854775808e18 <= x < 9.223372036854775808e18:
        i = np.int64(x)
        if 0 <= i < 128:
            buf[p] = np.uint8(i)
            return p + 1
        if i >= 0:
            if i < 256:
                return _put_be(buf, p, 0xCC, np.uint64(i), 1)
            if i < 65536:
                return _put_be(buf, p, 0xCD, np.uint64(i), 2)
            if i < 4294967296:
                return _put_be(buf, p, 0xCE, np.uint64(i), 4)
            return _put_be(buf, p, 0xCF, np.uint64(i), 8)
        u = np.uint64(i)  # two's complement bits
        if i >= -32:
            buf[p] = np.uint8(u & np.uint64(0xFF))
            return p + 1
        if i >= -128:
            return _put_be(buf, p, 0xD0, u, 1)
        if i >= -32768:
            return _put_be(buf, p, 0xD1, u, 2)
        if i >= -2147483648:
            return _put_be(buf, p, 0xD2, u, 4)
        return _put_be(buf, p, 0xD3, u, 8)
    f32[0] = x
    if float(f32[0]) == x:
        return _put_be(buf, p, 0xCA, np.uint64(u32[0]), 4)
    f64[0] = x
    return _put_be(buf, p, 0xCB, u64[0], 8)


@_inline
def _put_header(buf: U8, p: int, map_or_array: int, n: int) -> int:
    """A MessagePack map (0x80) or array (0x90) header of `n` items."""
    if n < 16:
        buf[p] = np.uint8(map_or_array | n)
        return p + 1
    if n < 65536:
        return _put_be(buf, p, 0xDE if map_or_array == 0x80 else 0xDC, np.uint64(n), 2)
    return _put_be(buf, p, 0xDF if map_or_array == 0x80 else 0xDD, np.uint64(n), 4)


@_inline
def _put_str(buf: U8, p: int, start: int, n: int) -> int:
    """A str header at `p` for the `n` bytes written at `start` (= p + 3), which move left
    when the header is shorter (as Redis' cmsgpack sizes it); the position after."""
    if n < 32:
        buf[p] = np.uint8(0xA0 | n)
        q = p + 1
    elif n < 256:
        buf[p] = 0xD9
        buf[p + 1] = np.uint8(n)
        q = p + 2
    else:
        buf[p] = 0xDA
        buf[p + 1] = np.uint8(n >> 8)
        buf[p + 2] = np.uint8(n & 0xFF)
        q = p + 3
    for i in range(n):
        buf[q + i] = buf[start + i]
    return q + n


@_jit
def encode_rows(block: F64, scalars: I64, windows: I64, buf: U8, ends: I64) -> None:
    """Format-2 bytes of each row of `block`: row i goes to buf[ends[i-1]:ends[i]].

    `scalars` and `windows` are the layout's scalar slots and window block starts;
    `buf` must hold `max_bytes(layout)` per row.
    """
    scratch = np.empty(1, np.uint64).view(np.uint8)
    u64 = scratch.view(np.uint64)
    f64 = scratch.view(np.float64)
    u32 = scratch[:4].view(np.uint32)
    f32 = scratch[:4].view(np.float32)
    shape = np.empty((windows.shape[0], 3), np.int64)  # head, active days, span
    p = 0
    for r in range(block.shape[0]):
        row = block[r]
        row32 = row.view(np.float32)
        buf[p] = FORMAT
        buf[p + 1] = 0
        buf[p + 2] = 0
        buf[p + 3] = 0
        ident = row[3] if 0 <= row[3] < 4294967296.0 else 0.0
        _put_le(buf, p + 4, np.uint64(ident), 4)
        f64[0] = row[1]
        _put_le(buf, p + 8, u64[0], 8)
        f64[0] = row[2]
        _put_le(buf, p + 16, u64[0], 8)
        entries = 0
        for slot in scalars:
            if row[slot] == row[slot]:
                entries += 1
        for w in range(windows.shape[0]):
            at = 2 * windows[w]
            head = int(row32[at])
            count = 0
            span = 0
            for age in range(WINDOW_DAYS):
                if row32[at + 1 + (head - age) % WINDOW_DAYS] != 0:
                    count += 1
                    span = age + 1
            shape[w, 0], shape[w, 1], shape[w, 2] = head, count, span
            if head != 0 or count:
                entries += 1
        q = _put_header(buf, p + HEADER_BYTES, 0x80, entries)
        for slot in scalars:
            if row[slot] == row[slot]:
                q = _put_number(buf, q, float(slot), u64, f64, u32, f32)
                q = _put_number(buf, q, row[slot], u64, f64, u32, f32)
        for w in range(windows.shape[0]):
            head, count, span = shape[w, 0], shape[w, 1], shape[w, 2]
            if head == 0 and count == 0:
                continue
            at = 2 * windows[w]
            q = _put_number(buf, q, float(windows[w]), u64, f64, u32, f32)
            start = q + 3  # room for a str16 header; moved left when shorter
            o = start
            if head > 0 and span < 2 * count:  # dense: fewer items
                o = _put_header(buf, o, 0x90, 1 + span)
                o = _put_number(buf, o, float(-head), u64, f64, u32, f32)
                for age in range(span):
                    amount = float(row32[at + 1 + (head - age) % WINDOW_DAYS])
                    o = _put_number(buf, o, amount, u64, f64, u32, f32)
            else:
                o = _put_header(buf, o, 0x90, 1 + 2 * count)
                o = _put_number(buf, o, float(head), u64, f64, u32, f32)
                for age in range(span):
                    amount = float(row32[at + 1 + (head - age) % WINDOW_DAYS])
                    if amount != 0:
                        o = _put_number(buf, o, float(age), u64, f64, u32, f32)
                        o = _put_number(buf, o, amount, u64, f64, u32, f32)
            q = _put_str(buf, q, start, o - start)
        ends[r] = q
        p = q


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
    n = len(blobs)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, blobs), np.int64, n), out=starts[1:])
    buf = b"".join(blobs)
    out = np.empty((n, layout.size // 8), np.float64)
    status = np.empty(n, np.uint8)
    decode_rows(buf, starts, layout.features_template, out, status)
    if status.any():
        for i in np.flatnonzero(status):
            if status[i] != FORMAT_1:
                raise ValueError(f"stored profile {i} of the block is malformed")
            old = np.frombuffer(layout.pad(blobs[i]), np.float64)
            out[i] = old[: out.shape[1]]
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
