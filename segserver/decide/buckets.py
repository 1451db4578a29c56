"""Deterministic buckets of a visitor id: variants, holdouts and `bucket` rules draw
from them, so assignments are sticky and reproducible offline."""

from __future__ import annotations

import hashlib

HASH_VERSION = 1
BUCKETS = 10_000  # resolution of percentages: 0.01 %


def bucket(visitor_id: str, salt: str) -> int:
    """0 … 9 999, uniform and stable: blake2b-64 of `"<version>:<salt>:<visitor>"`,
    little-endian, modulo 10 000 (test vectors in tests/unit/test_decide.py)."""
    digest = hashlib.blake2b(f"{HASH_VERSION}:{salt}:{visitor_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") % BUCKETS
