"""Arbitrary JSON to every endpoint of the spec (hypothesis), against the real app on a
real Redis: never a 5xx, and on every 4xx Redis is exactly as before (DUMP and TTL of
every key under the test's prefix): validation is complete before anything is
written."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segserver.http.openapi import document
from tests.security.conftest import FUZZ_STATS, Served

EXAMPLES = 25
REAL = {"site": "fz", "segment": "seg", "visitor": "vis", "id": "cam", "job": "x"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["fz", "seg", "vis", "cam", "con", "pla", "a"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "visitor_id", "events", "type", "rule", "placements", "name",
                         "status", "url", "kind", "payload", "variants", "value", "ids",
                         "properties", "version", "role", "options", "expression"])
        | st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)  # fmt: skip
raw_bodies = st.one_of(
    json_values.map(orjson.dumps),
    st.binary(max_size=40),
    st.sampled_from([b'{"a": "\\udc00"}', b"[" * 40 + b"]" * 40, b'{"q": 1e400}', b"NaN"]),
)


def _operations() -> list[tuple[str, str, str]]:
    ops = []
    for path, item in document()["paths"].items():
        for method, op in item.items():
            names = {n for option in op.get("security", []) for n in option}
            auth = ("admin" if "adminToken" in names else "server" if "serverKey" in names
                    and "siteKey" not in names else "site" if names else "none")  # fmt: skip
            ops.append((method.upper(), path, auth))
    return ops


def _headers(served: Served, auth: str) -> dict[str, str]:
    return {"admin": served.admin(), "none": {},
            "server": {"Authorization": f"Bearer {served.site['server_key']}"},
            "site": {"X-Segserver-Key": served.site["site_key"]}}[auth]  # fmt: skip


@pytest.mark.fuzz
@pytest.mark.parametrize(("method", "path", "auth"), _operations())
def test_arbitrary_json_never_5xx_and_4xx_changes_nothing(
    served: Served, method: str, path: str, auth: str
) -> None:
    url = re.sub(r"{(\w+)}", lambda m: REAL[m.group(1)], path)
    headers = {**_headers(served, auth), "Content-Type": "application/json"}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=raw_bodies)
    def one(body: bytes) -> None:
        before = served.snapshot()
        resp = served.call(method, url, headers=headers, data=body)
        FUZZ_STATS["property cases"] = FUZZ_STATS.get("property cases", 0) + 1
        assert resp.status_code < 500, (method, url, body, resp.text)
        if 400 <= resp.status_code < 500:
            assert served.snapshot() == before, (method, url, body, resp.status_code, resp.text)

    FUZZ_STATS["property operations"] = FUZZ_STATS.get("property operations", 0) + 1
    one()
