"""Bulk recompute on a real redis-server: stored membership equals a per-visitor
evaluation, and only visitors whose bits (or due instant) changed are written: the
writes are counted by Redis itself (commandstats of the commit script's HSET)."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as aioredis

from segserver.config import Settings
from segserver.demo import ensure_demo_site, seed_profiles
from segserver.errors import StorageError
from segserver.jobs.diff import with_dependents
from segserver.jobs.recompute import Start
from segserver.jobs.spread import recompute_spread
from segserver.membership import evaluate_visitor
from segserver.wiring import Services
from tests.conftest import Clock

VISITORS = 3000


async def hset_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_hset", {}).get("calls", 0))


async def stored_vs_evaluated(services: Services, site: str, now: float) -> tuple[int, int]:
    """(visitors whose stored bits of evaluated segments or due instant differ from a
    per-visitor evaluation at `now`, visitors compared)."""
    services.runtime.forget(site)  # the dictionary as stored now (seeding added values)
    ctx = await services.runtime.get(site)
    program = ctx.current_program()
    wrong = seen = 0
    for i in range(VISITORS):
        vid = f"demo-1-{i}"
        blob = await services.profiles.get(site, vid)
        assert blob is not None
        item = evaluate_visitor(ctx, vid, blob, now)
        assert item is not None
        stored = set((await services.membership.read(site, vid)).slots().tolist())
        expected = {ctx.segments[s].slot for s, v in zip(program.segment_ids, item.values,
                                                         strict=True) if v}  # fmt: skip
        evaluated = {ctx.segments[s].slot for s in program.segment_ids}
        keys = services.keys
        due = await services.clients.raw.zscore(keys.due(site, keys.visitor(site, vid).shard), vid)
        bad = (stored & evaluated) != expected or (due or math.inf) != item.next_change
        wrong += bad
        seen += 1
    return wrong, seen


async def test_recompute_writes_only_changed_visitors(services: Services, clock: Clock) -> None:
    site = (await ensure_demo_site(services)).id
    await seed_profiles(services, site, VISITORS)
    client = services.clients.raw
    now = clock.now

    first = await services.recomputer.run(site, now)
    assert first.visitors == VISITORS
    assert 0 < first.committed <= VISITORS
    assert await stored_vs_evaluated(services, site, now) == (0, VISITORS)

    before = await hset_calls(client)
    again = await services.recomputer.run(site, now)
    assert (again.visitors, again.committed) == (VISITORS, 0)
    assert await hset_calls(client) == before  # nothing written at all

    # an edit: exactly the visitors whose membership of that segment flips are written
    ctx = await services.runtime.get(site)
    seg = ctx.segments["high_value_customers"]
    old = set()
    for i in range(VISITORS):
        if seg.slot in (await services.membership.read(site, f"demo-1-{i}")).slots():
            old.add(f"demo-1-{i}")
    rule = {"all": [{"attr": "total_spent", "op": "gte", "value": 200},
                    {"attr": "orders", "op": "gte", "value": 2}]}  # fmt: skip
    out = await services.edits.update_segment(site, seg.id, {"rule": rule,
                                              "version": seg.version}, now)  # fmt: skip
    job = out["recompute_job"]
    before = await hset_calls(client)
    await services.recomputer.wait()
    record = await services.jobs.get(site, job)
    assert record["state"] == "done"
    assert record["segments"] == seg.id
    ctx = await services.runtime.get(site)
    new = set()
    for i in range(VISITORS):
        vid = f"demo-1-{i}"
        blob = await services.profiles.get(site, vid)
        item = evaluate_visitor(ctx, vid, blob or b"", now)
        assert item is not None
        if item.values[ctx.current_program().segment_ids.index(seg.id)]:
            new.add(vid)
    flipped = len(old ^ new)
    assert 0 < flipped < VISITORS // 2
    assert int(record["committed"]) == flipped
    # one HSET per committed visitor (the membership hash) plus the job's own records
    job_saves = await hset_calls(client) - before - flipped
    assert 0 < job_saves <= services.keys.shards + 2
    assert await stored_vs_evaluated(services, site, now) == (0, VISITORS)


async def test_an_edit_of_a_timed_rule_moves_due_instants(services: Services,
                                                           clock: Clock) -> None:  # fmt: skip
    site = (await ensure_demo_site(services)).id
    await seed_profiles(services, site, VISITORS)
    await services.recomputer.run(site, clock.now)
    seg = (await services.runtime.get(site)).segments["recent_buyers"]
    rule = {"attr": "last_order_at", "op": "within", "value": "45d"}
    await services.edits.update_segment(site, seg.id, {"rule": rule, "version": seg.version},
                                        clock.now)  # fmt: skip
    await services.recomputer.wait()
    assert await stored_vs_evaluated(services, site, clock.now) == (0, VISITORS)


async def test_resume_from_a_position_finishes_the_rest(services: Services, clock: Clock) -> None:
    site = (await ensure_demo_site(services)).id
    await seed_profiles(services, site, VISITORS)
    half = services.keys.shards // 2
    done = await services.recomputer.run(site, clock.now, shards=range(half))
    rest = await services.recomputer.run(site, clock.now, start=Start(half, 0, done.visitors))
    assert rest.visitors == VISITORS
    assert await stored_vs_evaluated(services, site, clock.now) == (0, VISITORS)


def test_dependents_follow_segment_references() -> None:
    rules = {"a": {"attr": "x"}, "b": {"segment": "a"}, "c": {"not": {"segment": "b"}},
             "d": {"attr": "y"}}  # fmt: skip
    assert with_dependents(rules, ["a"]) == ["a", "b", "c"]
    assert with_dependents(rules, ["d"]) == ["d"]


async def test_workers_spread_shards_over_processes(services: Services, settings: Settings,
                                                    clock: Clock) -> None:  # fmt: skip
    site = (await ensure_demo_site(services)).id
    await seed_profiles(services, site, VISITORS)
    seen: list[int] = []
    stats = await asyncio.to_thread(recompute_spread, settings, settings.redis_url, site,
                                    clock.now, 2, seen.append)  # fmt: skip
    assert stats.visitors == VISITORS and seen[-1] == VISITORS
    assert 0 < stats.committed <= VISITORS
    assert await stored_vs_evaluated(services, site, clock.now) == (0, VISITORS)


async def test_an_orphaned_job_is_claimed_once(services: Services, clock: Clock) -> None:
    jobs, now = services.jobs, clock.now
    await jobs.save("s", "alive", {"state": "running", "lease": now + 10}, new=True)
    await jobs.save("s", "dead", {"state": "running", "lease": now - 1, "shard": 3}, new=True)
    await jobs.save("s", "stopped", {"state": "interrupted", "lease": 0}, new=True)
    await jobs.save("s", "finished", {"state": "done", "lease": 0}, new=True)
    assert await jobs.claim("s", "alive", "me", now, 15) is None
    assert await jobs.claim("s", "finished", "me", now, 15) is None
    dead = await jobs.claim("s", "dead", "me", now, 15)
    assert dead is not None and (dead["owner"], dead["shard"]) == ("me", "3")
    assert await jobs.claim("s", "dead", "other", now, 15) is None  # claimed already
    assert (await jobs.claim("s", "stopped", "other", now, 15) or {}).get("state") == "running"


async def test_a_job_failed_on_redis_is_claimed_when_its_retry_is_due(
    services: Services, clock: Clock
) -> None:
    jobs, now = services.jobs, clock.now
    await jobs.save("s", "due", {"state": "failed", "retry_at": now - 1, "attempts": 2}, new=True)
    await jobs.save("s", "later", {"state": "failed", "retry_at": now + 60}, new=True)
    await jobs.save("s", "final", {"state": "failed", "retry_at": ""}, new=True)
    await jobs.save("s", "old", {"state": "failed"}, new=True)  # recorded before retries
    for job in ("later", "final", "old"):
        assert await jobs.claim("s", job, "me", now, 15) is None, job
    due = await jobs.claim("s", "due", "me", now, 15)
    assert due is not None
    assert (due["state"], due["owner"], due["retry_at"]) == ("running", "me", "")
    assert due["attempts"] == "2"  # kept: a further failure counts on
    assert await jobs.claim("s", "due", "other", now, 15) is None  # claimed already


async def test_a_job_failing_on_anything_but_redis_fails_for_good(services: Services) -> None:
    """The site is gone: no retry (only failures on Redis are tried again)."""
    job = await services.recomputer.start("no-such-site", 1_790_000_000.0, "recompute", 10)
    await services.recomputer.wait()
    record = await services.jobs.get("no-such-site", job)
    assert record["state"] == "failed" and "no-such-site" in record["error"]
    assert (record["attempts"], record["retry_at"]) == ("1", "")


async def test_a_refused_page_read_fails_the_run(
    services: Services, raw_redis: aioredis.Redis, clock: Clock
) -> None:
    """The page reader runs ahead in a task of its own: its failure reaches the run
    (which had waited for the next page forever, holding the job)."""
    site = (await ensure_demo_site(services)).id
    await seed_profiles(services, site, VISITORS)
    await raw_redis.execute_command("ACL", "SETUSER", "default", "-mget")
    try:
        with pytest.raises(StorageError):
            await asyncio.wait_for(services.recomputer.run(site, clock.now), 120)  # hang guard
    finally:
        await raw_redis.execute_command("ACL", "SETUSER", "default", "+mget")
