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
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Op:
    opcode: Opcode
    offset: int
    a: float = 0.0
    b: float = 0.0
    flags: int = 0

    def pack(self) -> bytes:
        return RECORD.pack(self.opcode, self.flags, self.offset, self.a, self.b)


def pack_ops(ops: Iterable[Op]) -> bytes:
    return b"".join(op.pack() for op in ops)


def unpack_ops(data: bytes) -> list[Op]:
    return [Op(Opcode(c), off, a, b, fl) for c, fl, off, a, b in RECORD.iter_unpack(data)]
