"""Direct, synchronous access to the redis-server processes of the fault harness
(segserver.bench.procs, bench.faults, tests/faults), which starts, kills, freezes and
fails them over and asks them about themselves: PING, ROLE, INFO, CLUSTER INFO, slot
owners, the change stream. The server never uses it; it is here because only
segserver/storage/ imports redis."""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot as _key_slot

#: what a node that is down, starting, frozen or failing over raises
NODE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)


def node_client(port: int, **kwargs: Any) -> Any:
    """A client of the node on 127.0.0.1:`port` (2 s time-out unless given)."""
    kwargs.setdefault("socket_timeout", 2)
    return redis.Redis(port=port, **kwargs)


def cluster_client(port: int) -> Any:
    """A cluster client that starts from the node on 127.0.0.1:`port`."""
    return RedisCluster(host="127.0.0.1", port=port)


def slot_owners(port: int) -> dict[int, int]:
    """slot → port of the primary serving it, as the cluster of `port` says now."""
    with RedisCluster(host="127.0.0.1", port=port) as rc:
        return {slot: int(rc.nodes_manager.get_node_from_slot(slot).port)
                for slot in range(16384)}  # fmt: skip


def key_slot(key: bytes) -> int:
    """The cluster hash slot of `key` (its hash tag's, if it has one)."""
    return int(_key_slot(key))
