"""Deterministic percentage buckets (version 1).

    salt_hash(salt)        = first 4 bytes (little-endian) of blake2b(salt UTF-8, 8 bytes)
    x                      = idhash << 32 | salt_hash          (a uint64)
    mix(x)                 = splitmix64's finaliser:
                             x ^= x >> 30; x *= 0xBF58476D1CE4E5B9
                             x ^= x >> 27; x *= 0x94D049BB133111EB
                             x ^= x >> 31                      (all mod 2**64)
    bucket(idhash, salt)   = mix(x) % 10_000                   (0 ... 9 999)

`idhash` is the 32-bit visitor hash stored in every profile's header
(`segserver.profile.identity.visitor_hash`). A bucket rule `[lo, hi]` in percent
matches `lo * 100 <= bucket < hi * 100`, so the resolution is 1/10 000 and rules
`[0, 50]` and `[50, 100]` with the same salt split visitors exactly in two. The
salt is the segment's (its id unless set) or the rule's own `"salt"`: equal salts
give equal buckets across segments. Test vectors: tests/unit/test_engine_hashing.py
and docs/rules.md. Changing any step is a new version, never an edit of this one.
"""

from __future__ import annotations

import hashlib

from segserver.profile.identity import visitor_hash

HASH_VERSION = 1
BUCKETS = 10_000
_M64 = (1 << 64) - 1


def salt_hash(salt: str) -> int:
    digest = hashlib.blake2b(salt.encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little")


def mix64(x: int) -> int:
    x &= _M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def bucket_of(idhash: int, salt_h: int) -> int:
    """The bucket (0-9 999) of a visitor id hash under a salt hash."""
    return mix64((idhash << 32) | salt_h) % BUCKETS


def visitor_bucket(visitor_id: str, salt: str) -> int:
    """The bucket of a visitor id under a salt (what a bucket rule sees)."""
    return bucket_of(visitor_hash(visitor_id), salt_hash(salt))
