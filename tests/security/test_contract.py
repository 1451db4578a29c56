"""Contract fuzzing: schemathesis generates requests for every operation of
/openapi.json (valid ones and ones the spec forbids) against the real app on a real
Redis, and checks every answer: no server error, the status, content type, headers
and body as the spec says. Bounded (`EXAMPLES` per operation) to stay quick on a busy
2-core machine; the numbers are printed at the end of the run."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks
from schemathesis.core.parameters import ParameterLocation

from segserver.http.openapi import document
from tests.security.conftest import FUZZ_STATS, Served

EXAMPLES = 12
# Checks left out, and why: a schema-valid body may still be refused for its meaning
# (a rule that does not compile, a campaign naming a missing placement: the models
# describe shape only); credentials are set per case here and tested with real
# tokens in test_roles.py; and stateful checks need links the spec does not declare.
EXCLUDED = [checks.positive_data_acceptance, checks.missing_required_header,
            checks.ignored_auth, checks.use_after_free, checks.ensure_resource_availability,
            checks.object_level_authorization]  # fmt: skip
SCHEMA = schemathesis.openapi.from_dict(document())
STATS = FUZZ_STATS  # printed at the end of the run (conftest.pytest_terminal_summary)
# Path parameters that name the fuzz site's real items half of the time, so that the
# handlers behind the 404s are reached too.
REAL = {"site": "fz", "segment": "seg", "visitor": "vis", "id": None, "job": None}


def _credentials(case: Any, served: Served) -> None:
    op = case.operation.definition.raw
    security = op.get("security") or []
    names = {name for option in security for name in option}
    if "adminToken" in names:
        case.headers = {**(case.headers or {}), **served.admin()}
    elif "serverKey" in names and "siteKey" not in names:
        case.headers = {
            **(case.headers or {}),
            "Authorization": f"Bearer {served.site['server_key']}",
        }
    elif "siteKey" in names:
        case.headers = {**(case.headers or {}), "X-Segserver-Key": served.site["site_key"]}


@pytest.mark.fuzz
@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), derandomize=True)  # fmt: skip
def test_every_operation_keeps_the_contract(case: Any, served: Served) -> None:
    params = case.path_parameters or {}
    # Only a path generated valid gets real names: a negative one stays invalid (else
    # the case, still counted negative, would be a valid request and accepted).
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
    for name in params if path is None or path.mode.is_positive else ():
        if REAL.get(name) and zlib.crc32(repr((name, case.body)).encode()) % 2 == 0:
            params[name] = REAL[name]
    _credentials(case, served)
    label = case.operation.label
    if label not in served.counts:
        served.counts[label] = 0
        STATS["contract operations"] = STATS.get("contract operations", 0) + 1
    served.counts[label] += 1
    STATS["contract cases"] = STATS.get("contract cases", 0) + 1
    STATS["spec operations"] = sum(len(v) for v in SCHEMA.raw_schema["paths"].values())
    case.call_and_validate(base_url=served.url, excluded_checks=EXCLUDED)
