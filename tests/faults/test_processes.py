"""The fault suite's processes do what their names say, on today's code: a server
killed with -9 and started again on the same Redis keeps every acknowledged event
and counts no retried one twice; a local 3+3 Redis Cluster serves segserver and
promotes a replica when a primary is killed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.procs import LocalCluster, RedisNode, ServeProcess, alive, wait_for

SITE = {"id": "s", "name": "S", "prebuilt": False}


def page_views(serve: ServeProcess, visitor: str) -> int:
    status, body = serve.admin("GET", f"/v1/admin/sites/s/visitors/{visitor}")
    assert status == 200, body
    return int(body["attributes"]["page_views"])


def send(serve: ServeProcess, key: dict[str, str], ids: range) -> dict[str, Any]:
    events = [{"visitor_id": "v", "type": "page_view", "event_id": f"e{i}"} for i in ids]
    status, body = serve.request("POST", "/v1/events", events, key)
    assert status == 202, body
    return dict(body)


@pytest.mark.slow
def test_server_killed_and_started_again_keeps_acknowledged_events(
    redis_node: RedisNode, serve: Callable[..., ServeProcess]
) -> None:
    first = serve(env={"SEGSERVER_REDIS_URL": redis_node.url})
    status, site = first.admin("POST", "/v1/admin/sites", SITE)
    assert status == 201, site
    key = {"X-Segserver-Key": site["site_key"]}
    assert send(first, key, range(10))["stored"] == 10
    pid = first.pid
    first.kill()
    assert not alive(pid)

    second = serve(env={"SEGSERVER_REDIS_URL": redis_node.url})
    assert page_views(second, "v") == 10
    again = send(second, key, range(5, 15))  # a client retrying 5 of them with their ids
    assert again["stored"] == 5
    assert page_views(second, "v") == 15


@pytest.mark.slow
def test_local_cluster_serves_segserver_and_fails_over(
    local_cluster: LocalCluster, serve: Callable[..., ServeProcess]
) -> None:
    assert len(local_cluster.master_ports()) == 3
    assert sorted(local_cluster.roles().values()).count("slave") == 3
    server = serve(env={"SEGSERVER_REDIS_URL": local_cluster.url()})
    status, site = server.admin("POST", "/v1/admin/sites", SITE)
    assert status == 201, site

    killed = local_cluster.kill_master(local_cluster.master_ports()[-1])
    local_cluster.wait_healthy()  # a replica took over the dead primary's slots
    masters = local_cluster.master_ports()
    assert killed not in masters and len(masters) == 3
    wait_for(lambda: server.admin("GET", "/v1/admin/sites/s")[0] == 200,
             "segserver reading the site after the failover")  # fmt: skip
