"""The fault suite's processes live in segserver.bench.procs (`segserver bench faults`
runs the same ones longer); the suite's servers share its Numba cache."""

from __future__ import annotations

from segserver.bench.procs import (
    REPO,
    LocalCluster,
    RedisNode,
    ServeProcess,
    alive,
    free_ports,
    wait_for,
)

#: the Numba cache of the test suite, so a served subprocess compiles no kernel again
TEST_CACHE = {"SEGSERVER_CACHE_DIR": str(REPO / ".segserver" / "test-data" / "numba-cache")}

__all__ = ["TEST_CACHE", "LocalCluster", "RedisNode", "ServeProcess", "alive", "free_ports",
           "wait_for"]  # fmt: skip
