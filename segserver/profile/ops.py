"""Profile update operations: the instruction set of lua/apply_events.lua.

An event compiles to a list of `Op` records, packed little-endian as
`<BBIdd` (opcode, flags, byte offset, a, b) = 22 bytes each; the Lua script
unpacks them with `struct` and applies them to the profile bytes. Keep the
numbers in sync with the header of lua/apply_events.lua
(tests/unit/test_ops.py checks it).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from typing import NamedTuple

RECORD = struct.Struct("<BBIdd")


class Opcode(enum.IntEnum):
    SET = 1  # slot = a
    ADD = 2  # slot = (slot or 0) + a
    SUB_FLOOR = 3  # slot = max(0, (slot or 0) - a)
    MAX = 4  # slot = max(slot, a); missing slot → a
    MIN = 5  # slot = min(slot, a); missing slot → a
    SET_IF_MISSING = 6  # slot = a if slot is missing
    UNSET = 7  # slot = missing (NaN)
    WINDOW_ADD = 8  # window block at offset: day a += b (rolls the ring forward)
    CHECK_GAP = 9  # gap := slot missing or a - slot > b
    TAG_ADD = 10  # a slots at offset: add code b (oldest dropped when full)
    TAG_REMOVE = 11  # a slots at offset: remove code b
    TAG_CLEAR = 12  # a slots at offset: all empty


FLAG_WHEN_GAP = 1  # apply only if the last CHECK_GAP of this event found a gap
# A CHECK_GAP record's flags // 2 counts the FLAG_WHEN_GAP records right after it, which
# the script skips unread when there is no gap (most page views): set by `pack_ops`.
GUARDED_MAX = 127


class Op(NamedTuple):
    """One record. A NamedTuple: a page view plans ~14 of them, and a tuple is made
    3x faster than a frozen dataclass."""

    opcode: Opcode
    offset: int
    a: float = 0.0
    b: float = 0.0
    flags: int = 0

    def pack(self) -> bytes:
        return RECORD.pack(self.opcode, self.flags, self.offset, self.a, self.b)


def pack_ops(ops: Iterable[Op]) -> bytes:
    """The records of `ops`, each CHECK_GAP with the count of gap-only records after it."""
    ops = list(ops)
    out = []
    for i, op in enumerate(ops):
        flags = op.flags
        if op.opcode is Opcode.CHECK_GAP:
            guarded = 0
            while (
                i + 1 + guarded < len(ops)
                and ops[i + 1 + guarded].flags & FLAG_WHEN_GAP
                and guarded < GUARDED_MAX
            ):
                guarded += 1
            flags = (flags & FLAG_WHEN_GAP) | guarded << 1
        out.append(RECORD.pack(op.opcode, flags, op.offset, op.a, op.b))
    return b"".join(out)


def unpack_ops(data: bytes) -> list[Op]:
    """The ops of packed records (a CHECK_GAP's count of guarded records dropped)."""
    return [
        Op(Opcode(c), off, a, b, fl & FLAG_WHEN_GAP if c == Opcode.CHECK_GAP else fl)
        for c, fl, off, a, b in RECORD.iter_unpack(data)
    ]
