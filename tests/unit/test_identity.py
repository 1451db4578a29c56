"""Visitor ids, the id hash (test vectors) and key hash tags (Redis Cluster slots)."""

from __future__ import annotations

import hashlib

import pytest
from redis.crc import key_slot

from segserver.errors import ValidationError
from segserver.profile.identity import check_visitor_id, shard_of, visitor_hash
from segserver.storage.keys import Keys


def test_visitor_hash_vectors() -> None:
    # Version 1: blake2b-64 of the UTF-8 id, first 4 bytes little-endian.
    # These numbers are part of the format (stored in every profile): never change them.
    raw = hashlib.blake2b(b"alice", digest_size=8).digest()
    assert visitor_hash("alice") == int.from_bytes(raw[:4], "little")  # the definition
    vectors = {v: visitor_hash(v) for v in ("alice", "bob", "v-1", "")}
    assert vectors == {
        "alice": 216853069,
        "bob": 724300660,
        "v-1": 3694913178,
        "": 1470146276,
    }


@pytest.mark.parametrize("vid", ["a", "x" * 128, "user@example.com", "v:1.2_3-4+5=6"])
def test_valid_visitor_ids(vid: str) -> None:
    assert check_visitor_id(vid) == vid


@pytest.mark.parametrize("vid", ["", "x" * 129, "a b", "a{b}", "é", "a\n", 5, None])
def test_invalid_visitor_ids(vid: object) -> None:
    with pytest.raises(ValidationError, match="visitor_id"):
        check_visitor_id(vid)


def test_all_keys_of_a_visitor_share_one_slot() -> None:
    keys = Keys("ss", 16)
    for i in range(200):
        vid = f"visitor-{i}"
        vk = keys.visitor("shop", vid)
        slots = {key_slot(k.encode()) for k in [*vk.all(), vk.shard_seq, vk.shard_ordinals]}
        assert len(slots) == 1, vk
        assert vk.shard == shard_of(vid, 16)
        assert all("shop" in k for k in vk.all())


def test_shards_spread_over_slots() -> None:
    keys = Keys("ss", 16)
    slots = {key_slot(keys.visitor("shop", f"v{i}").profile.encode()) for i in range(2000)}
    assert len(slots) == 16
    shards = [shard_of(f"v{i}", 16) for i in range(16000)]
    counts = [shards.count(s) for s in range(16)]
    assert min(counts) > 800  # ~1000 each


def test_dictionary_keys_share_the_site_slot() -> None:
    codes, values = Keys("ss", 16).dictionary("shop", "country")
    assert key_slot(codes.encode()) == key_slot(values.encode())
    assert "shop" in codes
