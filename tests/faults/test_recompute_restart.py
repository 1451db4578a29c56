"""A recompute job survives its server: killed with -9 or stopped with SIGTERM midway,
the job is resumed by the next server from its last committed page and finishes with
stored sizes equal to a full evaluation of every profile (issue 13, item 2)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest
import redis

from segserver import engine
from segserver.config import load_settings
from segserver.demo import DEMO_SITE, ensure_demo_site, seed_profiles
from segserver.profile import codec
from segserver.storage.bulk import BulkReader
from segserver.wiring import build_services
from tests.faults.procs import RedisNode, ServeProcess, wait_for

VISITORS = 30_000
# small pages and a short lease: the job is caught midway and resumed within seconds;
# no expiry scheduler, so stored membership is the job's evaluation at its instant alone
ENV = {"SEGSERVER_RECOMPUTE_CHUNK": "100", "SEGSERVER_RECOMPUTE_LEASE_SECONDS": "2",
       "SEGSERVER_EXPIRY_INTERVAL_SECONDS": "0"}  # fmt: skip


async def _seed(url: str) -> None:
    services = build_services(load_settings(redis_url=url))
    await services.scripts.load_all()
    await ensure_demo_site(services)
    await seed_profiles(services, DEMO_SITE, VISITORS)
    await services.close()


async def _sizes(url: str, at: float) -> tuple[dict[str, int], dict[str, int]]:
    """(stored sizes, sizes by evaluating every profile at `at`) of evaluated segments."""
    services = build_services(load_settings(redis_url=url))
    ctx = await services.runtime.get(DEMO_SITE)
    program = ctx.current_program()
    reader = BulkReader(services.clients.raw, services.keys)
    counts = np.zeros(len(program.segment_ids), np.int64)
    for shard in range(services.keys.shards):
        async for page in reader.pages(DEMO_SITE, shard, 5000):
            blobs = [b for b in page.profiles if b is not None]
            block = codec.features_block(blobs, ctx.data.schema.layout)
            words = np.zeros((len(blobs), program.words), np.uint64)
            engine.evaluate_batch(program, block, at, words)
            for i in range(len(program.segment_ids)):
                counts[i] += int(((words[:, i >> 6] >> np.uint64(i & 63)) & np.uint64(1)).sum())
    stored = await services.analytics.store.sizes(DEMO_SITE, ctx.slot_list)
    await services.close()
    ids = program.segment_ids
    return dict(zip(ids, stored, strict=True)), dict(zip(ids, counts.tolist(), strict=True))


def _job(node: RedisNode, job: str) -> dict[str, str]:
    raw = node.client().hgetall(f"ss:{{{DEMO_SITE}}}:job:{job}")
    return {k.decode(): v.decode() for k, v in raw.items()}


def _start_job(server: ServeProcess) -> str:
    status, body = server.admin("POST", f"/v1/admin/sites/{DEMO_SITE}/jobs", {"kind": "recompute"})
    assert status == 202, body
    return str(body["id"])


def _midway(node: RedisNode, job: str) -> None:
    """Wait until the job has committed some pages but not all."""
    client: redis.Redis = node.client()
    key = f"ss:{{{DEMO_SITE}}}:job:{job}"
    deadline = time.monotonic() + 60
    while int(client.hget(key, "done") or 0) < VISITORS // 10:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.002)


def _finishes_true(node: RedisNode, job: str, what: str) -> None:
    """Wait for the job to be done; it went over every visitor and the stored sizes
    equal a full evaluation at its instant."""
    done = wait_for(lambda: (r := _job(node, job))["state"] == "done" and r,
                    f"job {job} {what}", timeout=60)  # fmt: skip
    assert int(done["done"]) >= VISITORS, done
    stored, evaluated = asyncio.run(_sizes(node.url, float(done["at"])))
    assert stored == evaluated
    assert sum(evaluated.values()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_recompute_resumes_after_the_server_goes(
    how: str, redis_node: RedisNode, serve: Callable[..., ServeProcess]
) -> None:
    asyncio.run(_seed(redis_node.url))
    env = {"SEGSERVER_REDIS_URL": redis_node.url, **ENV}
    first = serve(env=env)
    job = _start_job(first)
    _midway(redis_node, job)
    if how == "kill -9":
        first.kill()
    else:
        assert first.stop() == 0  # SIGTERM
    left = _job(redis_node, job)
    assert left["state"] == ("running" if how == "kill -9" else "interrupted"), left
    assert 0 < int(left["done"]) < VISITORS, left

    serve(env=env)
    _finishes_true(redis_node, job, "resumed and done")


@pytest.mark.slow
def test_a_job_that_failed_on_redis_is_tried_again_and_finishes(
    redis_node: RedisNode, serve: Callable[..., ServeProcess]
) -> None:
    """Redis refuses the job's reads midway (an ACL change, as a failing-over shard
    would on a cluster while the job record's node stays up): the job is marked failed
    with a retry time, tried again from its last committed page and finishes with
    stored sizes equal to a full evaluation."""
    asyncio.run(_seed(redis_node.url))
    env = {"SEGSERVER_REDIS_URL": redis_node.url, **ENV, "SEGSERVER_JOBS_POLL_SECONDS": "0.2",
           "SEGSERVER_RECOMPUTE_RETRY_SECONDS": "0.5"}  # fmt: skip
    server = serve(env=env)
    job = _start_job(server)
    _midway(redis_node, job)
    admin = redis_node.client()
    admin.execute_command("ACL", "SETUSER", "default", "-mget")
    try:
        failed = wait_for(lambda: int((r := _job(redis_node, job)).get("attempts") or 0) >= 1 and r,
                          f"job {job} failed on Redis", timeout=60)  # fmt: skip
    finally:
        admin.execute_command("ACL", "SETUSER", "default", "+mget")
    assert "mget" in failed["error"].lower(), failed
    assert int(failed["done"]) < VISITORS, failed
    status, listed = server.admin("GET", f"/v1/admin/sites/{DEMO_SITE}/jobs/{job}")
    assert status == 200 and listed["attempts"] >= 1, listed

    _finishes_true(redis_node, job, "tried again and done")
