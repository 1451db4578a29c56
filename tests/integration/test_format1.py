"""Format-1 profiles (bytes written by the script before format 2, tests/cases/profiles)
keep decoding, are upgraded to format 2 by their next write, and that write gives the
same features and JSON as the old script did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segserver.profile import codec, packed
from segserver.profile.ingest import SiteData
from segserver.profile.schema import Schema
from segserver.profile.vocabulary import Vocabulary
from segserver.wiring import Services

CASES = json.loads((Path(__file__).parents[1] / "cases" / "profiles" / "format1.json").read_text())
SCHEMA = Schema.from_json(CASES["schema"])
LAYOUT = SCHEMA.layout


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal vectors, NaN = NaN (missing)."""
    return bool(np.array_equal(a, b, equal_nan=True))


async def site_data(services: Services) -> SiteData:
    vocab = Vocabulary()
    for attr, values in CASES["vocabulary"].items():
        codes = await services.dictionary.assign("f1", attr, values)
        assert codes == list(range(1, len(values) + 1))
        for value, code in zip(values, codes, strict=True):
            vocab.add(attr, value, code)
    return SiteData.of("f1", SCHEMA, vocab)


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["visitor_id"])
def test_format1_decodes_as_it_always_did(case: dict[str, Any]) -> None:
    before = bytes.fromhex(case["before"])
    assert before[0] == 0 and len(before) == LAYOUT.size
    assert same(codec.features(before, LAYOUT), np.frombuffer(before, np.float64))
    after = bytes.fromhex(case["after"])
    block = codec.features_block([after, before], LAYOUT)
    assert same(block[0], np.frombuffer(after, np.float64))
    vocab = Vocabulary(CASES["vocabulary"])
    assert codec.to_json(after, LAYOUT, vocab) == case["after_json"]


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["visitor_id"])
async def test_next_write_upgrades_and_matches_the_old_script(
    services: Services, raw_redis: Any, case: dict[str, Any]
) -> None:
    site = await site_data(services)
    vid = case["visitor_id"]
    key = services.keys.visitor("f1", vid).profile
    await raw_redis.set(key, bytes.fromhex(case["before"]))
    # a read (no events) leaves the bytes as they are
    read = await services.ingestor.ingest(site, [], case["now"], visitor_id=vid)
    assert read.profiles[vid] == bytes.fromhex(case["before"])

    done = await services.ingestor.ingest(site, [case["event"]], case["now"], visitor_id=vid)
    assert done.stored == 1
    stored = await raw_redis.get(key)
    assert stored == done.profiles[vid]
    assert stored[0] == packed.FORMAT
    assert len(stored) < LAYOUT.size / 4
    expected = np.frombuffer(bytes.fromhex(case["after"]), np.float64)
    got = codec.features(stored, LAYOUT)
    assert same(got, expected)
    assert codec.to_json(stored, LAYOUT, site.vocab) == case["after_json"]
    # and format 2 goes on from there: the same event again counts again
    again = await services.ingestor.ingest(site, [case["event"]], case["now"], visitor_id=vid)
    assert again.stored == 1
    assert codec.features(again.profiles[vid], LAYOUT)[1] == expected[1] + 1  # VERSION
