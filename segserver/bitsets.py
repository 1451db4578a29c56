"""Every bitset helper in one place.

Two bit orders meet here:
* the engine writes a visitor's membership as little-endian uint64 words, bit i of the
  program's i-th segment (`bits_to_values`);
* Redis bitmaps (SETBIT/GETBIT, stored membership by segment slot or by visitor
  ordinal) put bit i at the (7 - i % 8)-th bit of byte i // 8, as
  `np.packbits(..., bitorder="big")` lays it out (`bitmap_slots`); the page view's
  commit compares it as one big-endian int (membership.write_of).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def bits_to_values(words: npt.NDArray[np.uint64], count: int) -> npt.NDArray[np.bool_]:
    """Bit i of a little-endian uint64 bitset, for i < count."""
    flat = np.unpackbits(words.view(np.uint8), bitorder="little")[:count]
    return flat.astype(np.bool_)


def bitmap_slots(bits: bytes | None) -> npt.NDArray[np.int64]:
    """Positions of the set bits of a Redis bitmap."""
    unpacked = np.unpackbits(np.frombuffer(bits or b"", np.uint8), bitorder="big")
    return np.flatnonzero(unpacked).astype(np.int64)
