"""Fixtures of the fault suite: processes the tests break on purpose (see procs.py).
Each is private to its test and cleaned up even when the test fails midway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.procs import TEST_CACHE, LocalCluster, RedisNode, ServeProcess, free_ports


@pytest.fixture
def redis_node(tmp_path: Path) -> Iterator[RedisNode]:
    """A redis-server of this test alone, append-only file on (everysec)."""
    node = RedisNode(tmp_path / "redis", free_ports(1)[0]).start()
    yield node
    node.stop()


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A Redis Cluster of 3 primaries and 3 replicas, failing over within ~2 s."""
    cluster = LocalCluster(tmp_path / "cluster")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start `segserver serve` subprocesses: `serve(env={...}, args=[...])`."""
    started: list[ServeProcess] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None) -> ServeProcess:
        proc = ServeProcess(tmp_path, {**TEST_CACHE, **(env or {})}, args=args)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        if proc.process is not None:
            proc.stop()
