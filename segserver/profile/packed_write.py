"""The Numba kernel writing format 2 (see segserver/profile/packed.py) from feature
vectors, as Redis' cmsgpack would pack the same Lua table: demo seeding and tests (the
event path writes through lua/apply_events.lua).
"""

from __future__ import annotations

import math

import numpy as np

from segserver.profile.bits import bits_of_f32, bits_of_f64
from segserver.profile.packed_read import F64, FORMAT, HEADER_BYTES, I64, U8, _inline, _jit
from segserver.profile.schema import WINDOW_DAYS


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
def _put_number(buf: U8, p: int, x: float) -> int:
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
    single = np.float32(x)
    if float(single) == x:
        return _put_be(buf, p, 0xCA, np.uint64(bits_of_f32(single)), 4)
    return _put_be(buf, p, 0xCB, bits_of_f64(x), 8)


@_inline
def _put_key(buf: U8, p: int, slot: int) -> int:
    """A slot number (a map key) as cmsgpack writes a small non-negative integer."""
    if slot < 128:
        buf[p] = np.uint8(slot)
        return p + 1
    if slot < 256:
        return _put_be(buf, p, 0xCC, np.uint64(slot), 1)
    return _put_be(buf, p, 0xCD, np.uint64(slot), 2)


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
        _put_le(buf, p + 8, bits_of_f64(row[1]), 8)
        _put_le(buf, p + 16, bits_of_f64(row[2]), 8)
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
                q = _put_key(buf, q, slot)
                q = _put_number(buf, q, row[slot])
        for w in range(windows.shape[0]):
            head, count, span = shape[w, 0], shape[w, 1], shape[w, 2]
            if head == 0 and count == 0:
                continue
            at = 2 * windows[w]
            q = _put_key(buf, q, windows[w])
            start = q + 3  # room for a str16 header; moved left when shorter
            dense = head > 0 and span < 2 * count  # dense: fewer items
            o = _put_header(buf, start, 0x90, 1 + (span if dense else 2 * count))
            # the head, then per age its amount (dense) or age and amount if any (sparse):
            # one `_put_number` call site (each inlined copy costs compile time)
            for age in range(-1, span):
                if age < 0:
                    value = float(-head if dense else head)
                else:
                    value = float(row32[at + 1 + (head - age) % WINDOW_DAYS])
                    if not dense:
                        if value == 0:
                            continue
                        buf[o] = np.uint8(age)  # ages 0..34: positive fixints
                        o += 1
                o = _put_number(buf, o, value)
            q = _put_str(buf, q, start, o - start)
        ends[r] = q
        p = q
