"""Visitor ids: validation, the 32-bit id hash and the shard."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from segserver.errors import ValidationError

#: 1-128 characters of a safe set: no braces (hash tags), spaces or control characters.
VISITOR_ID_RE = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,128}$")
SITE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_visitor_id(value: object, path: str = "visitor_id") -> str:
    """Return `value` if it is a valid visitor id, else raise ValidationError naming `path`."""
    if not isinstance(value, str):
        raise ValidationError(f"{path}: must be a string", code="invalid_visitor_id")
    if not VISITOR_ID_RE.fullmatch(value):
        raise ValidationError(
            f"{path}: must be 1-128 characters of A-Z a-z 0-9 _ . : @ + = -",
            code="invalid_visitor_id",
        )
    return value


def check_site_id(value: object, path: str = "id") -> str:
    if not isinstance(value, str) or not SITE_ID_RE.fullmatch(value):
        raise ValidationError(
            f"{path}: must be 1-63 characters of a-z 0-9 - (starting with a letter or digit)",
            code="invalid_site_id",
        )
    return value


def visitor_hash(visitor_id: str) -> int:
    """A stable, well-mixed 32-bit hash of a visitor id (blake2b, first 4 bytes, LE).

    Version 1. Stored in each profile's header (IDHASH) so bulk work can bucket
    visitors without their ids. Test vectors in tests/unit/test_identity.py.
    """
    digest = hashlib.blake2b(visitor_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little")


@lru_cache(maxsize=65536)  # a page view derives a visitor's keys several times
def shard_of(visitor_id: str, shards: int) -> int:
    """The visitor's shard: every key of the visitor carries this shard's hash tag."""
    digest = hashlib.blake2b(visitor_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest[4:8], "little") % shards
