"""`segserver bench faults`: the fault suite's scenarios, longer and under load, against
a real `segserver serve` subprocess — one table row per scenario (docs/faults.md):

  redis-kill       kill -9 of redis-server, started again on its append-only file
  redis-freeze     redis-server stopped with SIGSTOP, then SIGCONT
  server-kill      kill -9 of the server, started again on the same port and Redis
  cluster-failover kill -9 of the primary holding the site's catalogue in a local Redis
                   Cluster of 3 primaries + 3 replicas, until its replica is promoted
  (all of them)    then kill -9 of the server during a recompute, and a restart: the
                   job's state and the stored segment size afterwards (a table of its own)

The load (segserver.bench.faultload) is page views and batches of 3 events, every
event with an id, from concurrent HTTP clients in this process. Columns:
acknowledged events (stored or duplicate, while the load ran), lost (acknowledged, not
in the profile), counted twice (after every unacknowledged event was retried with its
id), 5xx other than 503, 503s, degraded answers, requests of healthy-shard visitors
that were not full answers (cluster only; compare with the answers that were not full
before the fault: the 50 ms page-view budget on a busy machine), the outage (seconds
from the fault until Redis answered again, the server was up again or the replica was
promoted), seconds to recovery (from the fault until the affected visitors' answers
are full again: the first of 50 full ones in a row), and due exits missed (visitors
whose time window ended during the fault and that never exited their segment
afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segserver.bench.faultload import Load, Tally, reconcile
from segserver.bench.procs import LocalCluster, RedisNode, ServeProcess, free_ports
from segserver.profile.identity import shard_of
from segserver.storage.keys import Keys
from segserver.storage.nodes import NODE_ERRORS, cluster_client, key_slot, slot_owners

SCENARIOS = ("redis-kill", "redis-freeze", "server-kill", "cluster-failover")
SHARDS = 16
PREFIX = "fb"
WINDOW = 2  # seconds: the idle visitors' segment window, so they fall due in the fault
LEASE = 5  # seconds: the expiry claim lease (30 by default), so a lost claim is retaken


@dataclass
class Row:
    scenario: str
    acknowledged: int
    lost: int
    doubled: int
    five_xx: int
    unavailable: int  # 503
    degraded: int
    healthy_hit: int | None
    baseline: tuple[int, int]  # (not full answers, requests) before the fault
    outage: float  # the fault until Redis answered again (or the server, or the failover)
    recovery: float  # the fault until full answers for the affected visitors again
    exits_missed: int
    requests: int


def _env(url: str) -> dict[str, str]:
    return {"SEGSERVER_REDIS_URL": url, "SEGSERVER_KEY_PREFIX": PREFIX,
            "SEGSERVER_SHARDS": str(SHARDS), "SEGSERVER_LOG_LEVEL": "error",
            "SEGSERVER_EXPIRY_LEASE_SECONDS": str(LEASE),
            "SEGSERVER_EXPIRY_INTERVAL_SECONDS": "0.1"}  # fmt: skip


def _site(serve: ServeProcess) -> str:
    """A site with a placement, its default content and the idle visitors' segment; its key."""
    status, site = serve.admin("POST", "/v1/admin/sites", {"id": "s", "prebuilt": False})
    assert status == 201, site
    for path, body in (
        ("content", {"id": "c", "kind": "banner", "payload": {"title": "T"}}),
        ("placements", {"id": "top", "kind": "banner", "default_content": "c"}),
        ("segments", {"id": "recent", "status": "active",
                      "rule": {"attr": "last_seen", "op": "within", "value": f"{WINDOW}s"}}),
    ):  # fmt: skip
        status, made = serve.admin("POST", f"/v1/admin/sites/s/{path}", body)
        assert status == 201, made
    return str(site["site_key"])


def _recovered(tally: Tally, fault_at: float, streak: int = 50) -> float:
    """When the affected visitors got full answers again: the send time of the first of
    `streak` consecutive full answers to them after `fault_at` (a lone answer that is
    not full later on is the budget's noise, seen before the fault too)."""
    run_start, run = 0.0, 0
    for sent, group, kind in sorted(tally.timeline):
        if sent < fault_at or group != "affected":
            continue
        if kind.endswith("ok"):
            run_start, run = (sent, 1) if run == 0 else (run_start, run + 1)
            if run >= streak:
                return run_start
        else:
            run = 0
    return float("nan")


def _exits(client: Any, idle: list[str]) -> set[str]:
    keys, out = Keys(PREFIX, SHARDS), set()
    for shard in range(SHARDS):
        for _, fields in client.xrange(keys.changes("s", shard)):
            if fields[b"why"] == b"expiry" and fields[b"c"] == b"exited":
                out.add(fields[b"v"].decode())
    return out & set(idle)


async def _run(scenario: str, args: argparse.Namespace, tmp: Path) -> Row:
    cluster = node = None
    slot_port: dict[int, int] = {}
    victim = 0
    if scenario == "cluster-failover":
        cluster = LocalCluster(tmp / "cluster").start()
        slot_port = slot_owners(cluster.nodes[0].port)
        victim = slot_port[key_slot(b"{s}")]  # the catalogue's primary: the harder case
        seeds = [victim] + [n.port for n in cluster.nodes if n.port != victim]
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in seeds)
        reader: Any = cluster_client(cluster.nodes[0].port)
    else:
        node = RedisNode(tmp / "redis", free_ports(1)[0]).start()
        url = node.url
        reader = node.client()
    serve = ServeProcess(tmp, _env(url), port=free_ports(1)[0]).start()
    try:
        site_key = _site(serve)
        visitors = [f"v{i}" for i in range(args.visitors)]
        idle = [f"idle{i}" for i in range(20)]

        def on_victim(visitor: str) -> bool:
            slot = key_slot(f"{{s.{shard_of(visitor, SHARDS)}}}".encode())
            return slot_port[slot] == victim

        affected: Callable[[str], bool] = on_victim if cluster is not None else lambda _: True
        load = Load(serve.base, site_key, visitors, affected=affected,
                    concurrency=args.concurrency, placement="top")  # fmt: skip
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        await asyncio.sleep(args.seconds)
        status, _ = serve.request("POST", "/v1/events", [
            {"visitor_id": v, "type": "page_view", "event_id": "idle"} for v in idle],
            {"X-Segserver-Key": site_key})  # fmt: skip
        assert status == 202
        load.phase = "during"
        fault_at = time.monotonic()
        if scenario == "redis-kill":
            assert node is not None
            node.kill()
            await asyncio.sleep(args.fault_seconds)
            await asyncio.to_thread(node.start)
        elif scenario == "redis-freeze":
            assert node is not None
            node.freeze()
            await asyncio.sleep(args.fault_seconds)
            node.thaw()
        elif scenario == "server-kill":
            serve.kill()
            serve = ServeProcess(tmp, _env(url), port=serve.port)
            await asyncio.to_thread(serve.start)
        else:
            assert cluster is not None
            cluster.kill_master(victim)
            await asyncio.to_thread(cluster.wait_healthy)
        load.phase = "after"
        mended_at = time.monotonic()
        await asyncio.sleep(args.seconds)
        stop.set()
        tally: Tally = await running
        acked = tally.acknowledged
        await load.retry_unacknowledged(60)
        counted = await load.page_views(serve.admin_token)
        figures = reconcile(tally, counted, acked)
        deadline = time.monotonic() + LEASE + 10
        exited: set[str] = set()
        while time.monotonic() < deadline and len(exited) < len(idle):
            with contextlib.suppress(*NODE_ERRORS):
                exited = await asyncio.to_thread(_exits, reader, idle)
            await asyncio.sleep(0.2)
        recovered = _recovered(tally, fault_at)
        healthy = None
        if cluster is not None:
            healthy = sum(1 for t, group, kind in tally.timeline
                          if group == "healthy" and not kind.endswith("ok")
                          and t >= fault_at)  # fmt: skip
        return Row(
            scenario, figures.acknowledged, figures.lost, figures.doubled,
            tally.count(kind="5xx"), tally.count(kind="503"), tally.count(kind="degraded"),
            healthy, (sum(tally.count("before", kind=k) for k in ("degraded", "503")),
                      tally.count("before")),
            mended_at - fault_at, recovered - fault_at,
            len(idle) - len(exited),
            len(tally.timeline),
        )  # fmt: skip
    finally:
        serve.stop()
        if cluster is not None:
            cluster.stop()
        if node is not None:
            node.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench faults")
    parser.add_argument("scenarios", nargs="*", help=f"some of {', '.join(SCENARIOS)} (all)")
    parser.add_argument("--seconds", type=float, default=10, help="load before and after")
    parser.add_argument("--fault-seconds", type=float, default=5,
                        help="how long Redis stays dead or frozen")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument(
        "--recompute-visitors",
        type=int,
        default=50_000,
        help="profiles of the restart-during-recompute run (0: skip it)",
    )
    parser.add_argument("--recompute-wait", type=float, default=60,
                        help="seconds to wait for the job after the restart")  # fmt: skip
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {sorted(unknown)[0]!r}: one of {', '.join(SCENARIOS)}")
    rows = []
    for scenario in args.scenarios or SCENARIOS:
        with tempfile.TemporaryDirectory(prefix=f"segfaults-{scenario}-") as tmp:
            rows.append(asyncio.run(_run(scenario, args, Path(tmp))))
            print(f"  {scenario}: done", flush=True)
    print(f"segserver bench faults: {args.seconds:g} s of load before and after each fault, "
          f"{args.concurrency} concurrent clients, {args.visitors} visitors, Redis out for "
          f"{args.fault_seconds:g} s (kill, freeze)")  # fmt: skip
    head = ("scenario", "requests", "acknowledged", "lost", "counted twice", "5xx", "503",
            "degraded", "healthy-shard hit", "not full before the fault", "outage s",
            "s to recovery", "due exits missed")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        healthy = "n/a" if r.healthy_hit is None else str(r.healthy_hit)
        cells = (r.scenario, f"{r.requests:,}", f"{r.acknowledged:,}", r.lost, r.doubled,
                 r.five_xx, r.unavailable, r.degraded, healthy,
                 f"{r.baseline[0]} of {r.baseline[1]:,}", f"{r.outage:.1f}",
                 f"{r.recovery:.1f}",
                 r.exits_missed)  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.recompute_visitors and not args.scenarios:
        with tempfile.TemporaryDirectory(prefix="segfaults-recompute-") as tmp:
            job = recompute_restart(args.recompute_visitors, args.recompute_wait, Path(tmp))
        print(f"\nkill -9 of the server during a recompute of {job.visitors:,} profiles "
              f"(at {job.killed_at:.0f} %), then started again:")  # fmt: skip
        print("| job state | percent | stored size | true size | seconds after the restart |")
        print("|---|---|---|---|---|")
        print(f"| {job.state} | {job.percent:.0f} | {job.size:,} | {job.visitors:,} | "
              f"{job.seconds:.1f} |")  # fmt: skip
    return 0


@dataclass
class JobRow:
    visitors: int
    killed_at: float  # the job's percent when the server was killed
    state: str  # the job's state when the wait ended
    percent: float
    size: int  # the segment's stored size then
    seconds: float  # from the restart until the job finished (or the wait ended)


def _job(serve: ServeProcess) -> dict[str, Any] | None:
    status, body = serve.admin("GET", "/v1/admin/sites/s/jobs")
    if status != 200 or not body["jobs"]:
        return None
    return dict(body["jobs"][0])


def recompute_restart(visitors: int, wait: float, tmp: Path) -> JobRow:
    """kill -9 of the server during the recompute a new segment starts over `visitors`
    profiles, then a restart; the job's state and the stored size `wait` s later."""
    node = RedisNode(tmp / "redis", free_ports(1)[0]).start()
    serve = ServeProcess(tmp, _env(node.url), port=free_ports(1)[0]).start()
    try:
        site_key = _site(serve)
        for start in range(0, visitors, 100):
            batch = [{"visitor_id": f"r{i}", "type": "page_view", "event_id": "e"}
                     for i in range(start, min(start + 100, visitors))]  # fmt: skip
            status, _ = serve.request("POST", "/v1/events", batch, {"X-Segserver-Key": site_key})
            assert status == 202
        rule = {"attr": "page_views", "op": "gte", "value": 1}
        status, made = serve.admin("POST", "/v1/admin/sites/s/segments",
                                   {"id": "viewers", "status": "active", "rule": rule})  # fmt: skip
        assert status == 201, made
        job = _job(serve)
        if job is None or job.get("state") in ("done", "failed"):
            status, job = serve.admin("POST", "/v1/admin/sites/s/jobs", {"kind": "recompute"})
            assert status == 202, job
        deadline = time.monotonic() + 60
        while (job := _job(serve)) is not None and job["percent"] < 5:
            assert time.monotonic() < deadline, "the recompute made no progress"
            time.sleep(0.01)
        killed_at = float(job["percent"]) if job else 0.0
        serve.kill()
        serve = ServeProcess(tmp, _env(node.url), port=serve.port)
        serve.start()
        started = time.monotonic()
        while time.monotonic() < started + wait:
            job = _job(serve)
            if job is not None and job.get("state") == "done":
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        _, stats = serve.admin("GET", "/v1/admin/sites/s/segments/viewers/stats")
        state = str(job.get("state")) if job else "none"
        percent = float(job["percent"]) if job else 0.0
        return JobRow(visitors, killed_at, state, percent, int(stats["size"]), seconds)
    finally:
        serve.stop()
        node.stop()
