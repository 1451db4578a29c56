"""Numba kernels reading format 2 (see segserver/profile/packed.py) into feature vectors:
a MessagePack subset (ints, floats, nil, bools, maps, arrays, str/bin holding arrays),
bounds-checked, never raising: a status says OK or CORRUPT. Format-1 bytes (the vector
itself) are copied as they are.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from segserver.profile.bits import f32_from_bits, f64_from_bits
from segserver.profile.schema import HEADER_SLOTS, WINDOW_DAYS

FORMAT = 2
HEADER_BYTES = 24
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

# Status of one decoded profile.
OK, CORRUPT = 0, 2

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
# Helpers are inlined at Numba IR level: a real call passes each array as a struct and
# counts references (the engine measured ~25 ns a call); only `_decode` stays a call so
# that its body is compiled once for both entry points.
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
_WINDOW_SLOTS = (WINDOW_DAYS + 1) // 2  # float64 slots of a window block (18)


# --- reading --------------------------------------------------------------------------


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
def _number(buf: bytes, p: int, end: int) -> tuple[float, int]:
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
        return f64_from_bits(_be64(buf, p + 1)), p + 9
    if t == 0xCA:
        if p + 5 > end:
            return 0.0, -1
        return float(f32_from_bits(np.uint32(_be32(buf, p + 1)))), p + 5
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
def _window(buf: bytes, p: int, end: int, n: int, out32: Any, r: int, at: int) -> int:  # fmt: skip
    """Decode a window array of `n` items at `p` into row `r`'s block at float32 index `at`.
    One `_number` call site (each inlined copy costs compile time)."""
    dense = False
    day0 = 0
    age = 0.0
    for j in range(n):
        value, p = _number(buf, p, end)
        if p < 0 or value != value:
            return -1
        if j == 0:  # the head day, negative for the dense form
            dense = value < 0
            head = -value if dense else value
            out32[r, at] = head
            day0 = int(head)
        elif dense:  # amounts by age
            if j - 1 < WINDOW_DAYS:
                out32[r, at + 1 + (day0 - (j - 1)) % WINDOW_DAYS] = value
        elif j % 2 == 1:  # sparse: an age, then its amount
            age = value
        elif 0 <= age < WINDOW_DAYS:
            out32[r, at + 1 + (day0 - int(age)) % WINDOW_DAYS] = value
    if n < 1 or (not dense and n % 2 == 0):  # no head, or an age without its amount
        return -1
    return p


@_jit
def _decode(buf: bytes, start: int, end: int, out: F64, out32: Any, out8: Any, r: int) -> int:
    """Decode one profile buf[start:end] into row `r` of `out` (N × F, holding the
    template; `out32` and `out8` are its float32 and byte views); a status. Views are
    made by the callers, once: each one counts references (NRT)."""
    if end == start:
        return OK  # no profile: the template
    if buf[start] == 0:  # format 1: the float64 vector of an equal or older layout
        for k in range(min(end - start, out8.shape[1]) // 8 * 8):  # a memcpy loop
            out8[r, k] = buf[start + k]
        return OK
    if buf[start] != FORMAT:
        return CORRUPT
    if end - start < HEADER_BYTES + 1:
        return CORRUPT
    out[r, 3] = float(_le64(buf, start) >> np.uint64(32))  # IDHASH: bytes 4..7
    out[r, 1] = f64_from_bits(_le64(buf, start + 8))
    out[r, 2] = f64_from_bits(_le64(buf, start + 16))
    kind, n, p = _container(buf, start + HEADER_BYTES, end)
    if kind == 0:
        return CORRUPT
    size = out.shape[1]
    for i in range(n):
        if kind == 1:
            if p < end and buf[p] < 0x80:  # most keys: a positive fixint
                slot = np.int64(buf[p])
                p += 1
            elif p + 3 <= end and buf[p] == 0xCD:  # uint16 (slots up to 65535)
                slot = np.int64(_be16(buf, p + 1))
                p += 3
            elif p + 2 <= end and buf[p] == 0xCC:  # uint8
                slot = np.int64(buf[p + 1])
                p += 2
            else:  # nothing segserver writes: not a slot
                return CORRUPT
            if p < 0 or p >= end:
                return CORRUPT
        else:  # an array stands for keys 1..n (how cmsgpack writes a table keyed 1..n)
            slot = np.int64(i + 1)
            if p >= end:
                return CORRUPT
        t = buf[p]
        if t < 0x80 or (t >= 0xC0 and not (0xC4 <= t <= 0xC6 or 0xD9 <= t <= 0xDF)):
            value, p = _number(buf, p, end)  # a scalar
            if HEADER_SLOTS <= slot < size:
                out[r, slot] = value
        else:  # a window: an array, or an array packed in a string
            inner, q = _string(buf, p, end)
            stop = end if inner < 0 else q + inner
            vkind, vn, q = _container(buf, p if inner < 0 else q, stop)
            if vkind != 2 or slot < HEADER_SLOTS or slot + _WINDOW_SLOTS > size:
                return CORRUPT
            p = _window(buf, q, stop, vn, out32, r, int(2 * slot))
            if inner >= 0 and p != stop:
                return CORRUPT
        if p < 0:
            return CORRUPT
    return OK if p == end else CORRUPT


@_inline
def _rows(buf: bytes, starts: I64, template: F64, out: F64, status: U8) -> None:
    out32 = out.view(np.float32)
    out8 = out.view(np.uint8)
    for i in range(out.shape[0]):
        for k in range(template.shape[0]):
            out[i, k] = template[k]
        status[i] = _decode(buf, starts[i], starts[i + 1], out, out32, out8, i)


@_jit
def decode_one(buf: bytes, template: F64, out: F64) -> int:
    """Decode one stored profile `buf` into `out` (float64[layout.size // 8]); a status."""
    for k in range(template.shape[0]):
        out[k] = template[k]
    rows = out.reshape((1, out.shape[0]))
    return int(_decode(buf, 0, len(buf), rows, rows.view(np.float32), rows.view(np.uint8), 0))


@_jit
def decode_rows(buf: bytes, starts: I64, template: F64, out: F64, status: U8) -> None:
    """Profile i is buf[starts[i]:starts[i + 1]]; its features go to out[i]."""
    _rows(buf, starts, template, out, status)
