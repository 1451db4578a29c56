"""Trigger delivery on a real redis-server to a real local aiohttp receiver:
signatures, idempotency keys, retries with back-off, dead letters and re-drive,
filters, several runners on one stream, take-over after a crash. Time is stepped
with `run_once(now)`; nothing sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from segserver.catalogue.triggers import TriggerService
from segserver.errors import ConfigError
from segserver.http.webhooks import WebhookClient
from segserver.jobs.triggers import (
    DELIVERY_FAILED,
    DeadLetters,
    TriggerOptions,
    TriggerRunner,
    build_triggers,
)
from segserver.profile.identity import shard_of
from segserver.storage.changes import GROUP
from segserver.storage.keys import Keys
from segserver.wiring import Services

SITE = "shop"
T0 = 1_790_000_000.0
LOCAL = "127.0.0.0/8"  # where the test receivers listen


@dataclass
class Hit:
    name: str
    raw: bytes
    body: dict[str, Any]
    headers: dict[str, str]
    signed: bool

    @property
    def key(self) -> str:
        return self.headers["X-Segserver-Idempotency-Key"]

    @property
    def attempt(self) -> int:
        return int(self.headers["X-Segserver-Attempt"])


class Receiver:
    """A webhook endpoint per name at /hook/{name}; it checks every signature with
    the secret of the subscription named in the body, and answers 500 while the
    name has failures left (-1: for ever)."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.failures: dict[str, int] = {}
        self.hits: list[Hit] = []
        self.delivered: list[Hit] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    def url(self, name: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/hook/{name}"))

    def of(self, name: str) -> list[Hit]:
        return [h for h in self.delivered if h.name == name]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = await request.read()
        body = json.loads(raw)
        secret = self.secrets.get(body["subscription"], "")
        stamp = request.headers.get("X-Segserver-Timestamp", "").encode()
        signed = stamp + b"." + raw  # the signature covers the timestamp too
        expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Segserver-Signature", "")
        hit = Hit(name, raw, body, dict(request.headers), hmac.compare_digest(given, expected))
        self.hits.append(hit)
        if name == "hang":
            await self.release.wait()
        if not hit.signed:
            return web.Response(status=401)
        left = self.failures.get(name, 0)
        if left:
            self.failures[name] = left - 1 if left > 0 else left
            return web.Response(status=500)
        self.delivered.append(hit)
        self.arrived.set()
        return web.Response(status=204)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{name}", rec.handle)
    rec.server = TestServer(app, host="127.0.0.1")
    await rec.server.start_server()
    yield rec
    rec.release.set()
    await rec.server.close()


@pytest_asyncio.fixture
async def webhooks() -> AsyncIterator[WebhookClient]:
    # the receiver listens on 127.0.0.1, which only an allow-list lets a webhook reach
    async with WebhookClient(allow=[LOCAL]) as client:
        yield client


@dataclass
class Parts:
    service: TriggerService
    runner: TriggerRunner
    dead: DeadLetters
    keys: Keys
    redis: aioredis.Redis

    def another_runner(self, webhooks: WebhookClient, **options: Any) -> TriggerRunner:
        return build_triggers(
            self.runner.store.client, self.keys, webhooks.post_json, TriggerOptions(**options)
        )[1]


def parts(
    services: Services, raw: aioredis.Redis, webhooks: WebhookClient, **options: Any
) -> Parts:
    service, runner, dead = build_triggers(
        services.clients.text, services.keys, webhooks.post_json, TriggerOptions(**options)
    )
    return Parts(service, runner, dead, services.keys, raw)


async def subscribe(p: Parts, receiver: Receiver, name: str, **body: Any) -> str:
    sub = await p.service.create(SITE, {"url": receiver.url(name), **body}, T0, [LOCAL])
    receiver.secrets[sub.id] = sub.secret
    return sub.id


async def emit(p: Parts, visitor: str, segment: str, change: str, t: float = T0) -> str:
    """XADD one change exactly as the membership script writes it; its entry id."""
    shard = shard_of(visitor, p.keys.shards)
    fields = {"v": visitor, "s": segment, "c": change, "t": repr(t), "why": "event"}
    entry = await p.redis.xadd(p.keys.changes(SITE, shard), fields)
    return f"{shard}:{entry.decode()}"


async def pending(p: Parts) -> int:
    total = 0
    for shard in range(p.keys.shards):
        info = await p.redis.xpending(p.keys.changes(SITE, shard), GROUP)
        total += info["pending"]
    return total


async def test_delivery_is_signed_and_carries_the_change(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks)
    sub_id = await subscribe(p, receiver, "a")
    where = await emit(p, "visitor-1", "vip", "entered", T0 - 3)
    stats = await p.runner.run_once(T0)
    assert (stats.read, stats.delivered, stats.retrying) == (1, 1, 0)
    [hit] = receiver.hits
    assert hit.signed
    assert hit.key == f"{where}:{sub_id}"
    assert hit.headers["X-Segserver-Timestamp"] == str(int(T0))
    assert hit.headers["Content-Type"] == "application/json"
    shard, entry = where.split(":")
    assert hit.body == {
        "id": hit.key,
        "type": "segment.entered",
        "site": SITE,
        "subscription": sub_id,
        "visitor_id": "visitor-1",
        "segment": "vip",
        "change": "entered",
        "cause": "event",
        "at": T0 - 3,
        "stream_entry": entry,
        "shard": int(shard),
    }
    assert not (await p.runner.run_once(T0 + 3600)).busy
    assert len(receiver.hits) == 1
    assert await pending(p) == 0


async def test_a_receiver_that_fails_first_is_retried_with_backoff(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks, retries=5, backoff_seconds=10.0)
    await subscribe(p, receiver, "flaky")
    receiver.failures["flaky"] = 3
    await emit(p, "v1", "vip", "entered")
    now = T0
    assert (await p.runner.run_once(now)).retrying == 1
    assert await pending(p) == 0  # the change is acknowledged; the retry is scheduled
    for retry in (1, 2, 3):
        delay = 10.0 * 2 ** (retry - 1)  # jitter puts the retry in [delay/2, delay]
        assert not (await p.runner.run_once(now + delay / 2 - 0.01)).busy
        now += delay
        stats = await p.runner.run_once(now)
        assert (stats.delivered, stats.retrying) == ((1, 0) if retry == 3 else (0, 1))
    assert [h.attempt for h in receiver.hits] == [1, 2, 3, 4]
    assert len({h.key for h in receiver.hits}) == 1
    assert len({h.raw for h in receiver.hits}) == 1
    assert all(h.signed for h in receiver.hits)
    assert len(receiver.of("flaky")) == 1
    assert not (await p.runner.run_once(now + 86400)).busy
    assert len(receiver.hits) == 4
    assert await p.runner.store.retries(SITE) == 0


async def test_dead_letter_keeps_the_last_error_and_redrive_delivers_it(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks, retries=2, backoff_seconds=1.0)
    sub_id = await subscribe(p, receiver, "down")
    receiver.failures["down"] = -1
    await emit(p, "v1", "vip", "exited")
    now = T0
    for _ in range(3):
        await p.runner.run_once(now)
        now += 100
    assert [h.attempt for h in receiver.hits] == [1, 2, 3]
    total, [dead] = await p.dead.read(SITE)
    assert total == 1
    assert dead["attempts"] == 3
    # one generic error whatever failed (a dead letter is no port scanner)
    assert (dead["last_error"], dead["last_status"]) == (DELIVERY_FAILED, None)
    assert dead["url"] == receiver.url("down")
    assert dead["subscription"] == sub_id
    assert dead["payload"]["change"] == "exited"
    assert await p.runner.store.retries(SITE) == 0
    assert not (await p.runner.run_once(now + 86400)).busy

    receiver.failures["down"] = 0  # fixed
    assert await p.dead.redrive(SITE, now, ids=["not-there"]) == 0
    assert await p.dead.redrive(SITE, now, ids=[dead["id"]]) == 1
    assert await p.dead.redrive(SITE, now) == 0  # taken once
    assert (await p.runner.run_once(now)).delivered == 1
    [ok] = receiver.of("down")
    assert ok.key == dead["id"] == receiver.hits[0].key
    assert ok.raw == receiver.hits[0].raw
    assert ok.attempt == 1  # a re-drive starts a fresh set of retries
    assert await p.dead.read(SITE) == (0, [])


async def test_every_failure_records_the_same_generic_error(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks, retries=0, timeout_seconds=0.2)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = await p.service.create(SITE, {"url": f"http://127.0.0.1:{port}/x"}, T0, [LOCAL])
    hang = await subscribe(p, receiver, "hang")
    await emit(p, "v1", "vip", "entered")
    stats = await p.runner.run_once(T0)
    assert (stats.delivered, stats.dead) == (0, 2)
    _, letters = await p.dead.read(SITE)
    by_sub = {d["subscription"]: d for d in letters}
    assert by_sub[closed.id]["last_status"] is None
    assert by_sub[closed.id]["last_error"] == by_sub[hang]["last_error"] == DELIVERY_FAILED
    assert (await p.dead.read(SITE, subscription=hang))[0] == 1


async def test_segment_and_change_filters(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks)
    await subscribe(p, receiver, "vip-in", segments=["vip"], changes="entered")
    await subscribe(p, receiver, "all-out", changes="exited")
    await subscribe(p, receiver, "two", segments=["vip", "churn"])
    paused = await subscribe(p, receiver, "paused", active=False)
    for visitor, segment, change in [
        ("v1", "vip", "entered"),
        ("v2", "vip", "exited"),
        ("v3", "churn", "entered"),
        ("v4", "other", "exited"),
    ]:
        await emit(p, visitor, segment, change)
    await p.runner.run_once(T0)

    def seen(name: str) -> set[tuple[str, str]]:
        return {(h.body["segment"], h.body["change"]) for h in receiver.of(name)}

    assert seen("vip-in") == {("vip", "entered")}
    assert seen("all-out") == {("vip", "exited"), ("other", "exited")}
    assert seen("two") == {("vip", "entered"), ("vip", "exited"), ("churn", "entered")}
    assert seen("paused") == set()
    await p.service.update(SITE, paused, {"active": True}, T0)
    await emit(p, "v5", "vip", "entered")
    await p.runner.run_once(T0)
    assert seen("paused") == {("vip", "entered")}
    assert len(receiver.hits) == 9  # 6, then vip-in, two and paused once more


def same_shard_visitors(keys: Keys, count: int) -> list[str]:
    return [v for v in (f"v{i}" for i in range(10_000)) if shard_of(v, keys.shards) == 0][:count]


async def test_two_runners_never_deliver_one_change_twice(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks, batch=5)
    await subscribe(p, receiver, "a")
    other = p.another_runner(webhooks, batch=5)
    for visitor in same_shard_visitors(p.keys, 20):  # one stream, so they must share it
        await emit(p, visitor, "vip", "entered")
    first = await asyncio.gather(p.runner.run_once(T0), other.run_once(T0))
    assert [s.read for s in first] == [5, 5]
    while any(s.busy for s in await asyncio.gather(p.runner.run_once(T0), other.run_once(T0))):
        pass
    keys = [h.key for h in receiver.of("a")]
    assert len(keys) == len(set(keys)) == 20
    assert len(receiver.hits) == 20
    assert await pending(p) == 0


async def test_a_crashed_runners_changes_are_taken_over_after_the_lease(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks, lease_seconds=60.0)
    await subscribe(p, receiver, "a")
    visitors = same_shard_visitors(p.keys, 3)
    for visitor in visitors:
        await emit(p, visitor, "vip", "entered")
    stream = p.keys.changes(SITE, 0)
    # A runner reads the changes and dies before acknowledging them.
    taken = await raw_redis.xreadgroup(GROUP, "crashed", {stream: ">"}, count=10)
    ids = [entry for entry, _ in taken[0][1]]
    assert len(ids) == 3
    stats = await p.runner.run_once(T0)
    assert (stats.read, stats.delivered) == (0, 0)  # still within the crashed one's lease
    # Redis measures the lease: age the entries as if 61 s had passed.
    await raw_redis.xclaim(stream, GROUP, "crashed", 0, ids, idle=61_000, justid=True)
    stats = await p.runner.run_once(T0)
    assert (stats.read, stats.delivered) == (3, 3)
    assert sorted(h.body["visitor_id"] for h in receiver.of("a")) == sorted(visitors)
    assert await pending(p) == 0


async def test_a_claimed_retry_is_exclusive_until_its_lease_ends(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks, backoff_seconds=1.0, lease_seconds=60.0)
    await subscribe(p, receiver, "a")
    receiver.failures["a"] = 1
    await emit(p, "v1", "vip", "entered")
    await p.runner.run_once(T0)
    other = p.another_runner(webhooks, lease_seconds=60.0)
    both = await asyncio.gather(p.runner.run_once(T0 + 5), other.run_once(T0 + 5))
    assert sorted(s.delivered for s in both) == [0, 1]
    assert len(receiver.hits) == 2

    # A claimer that dies holding a retry: nobody else retries it before its lease ends.
    receiver.failures["a"] = 1
    await emit(p, "v2", "vip", "entered")
    await p.runner.run_once(T0 + 10)
    [(delivery_id, _)] = await other.store.claim_due(SITE, T0 + 20, 60.0, 10)
    assert not (await p.runner.run_once(T0 + 79)).busy
    assert (await p.runner.run_once(T0 + 80)).delivered == 1
    assert receiver.of("a")[-1].key == delivery_id
    assert len(receiver.hits) == 4


async def test_changes_before_the_first_subscription_are_not_delivered(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks)
    await emit(p, "early", "vip", "entered")
    first = await subscribe(p, receiver, "a")
    await emit(p, "v1", "vip", "entered")
    await p.runner.run_once(T0)
    assert [h.body["visitor_id"] for h in receiver.hits] == ["v1"]
    # nobody subscribed for a while: what happened meanwhile is not delivered later
    await p.service.delete(SITE, first)
    await emit(p, "meanwhile", "vip", "entered")
    assert not (await p.runner.run_once(T0)).busy
    await subscribe(p, receiver, "b")
    await emit(p, "v2", "vip", "entered")
    await p.runner.run_once(T0)
    assert [h.body["visitor_id"] for h in receiver.hits] == ["v1", "v2"]


async def test_malformed_entries_and_a_recreated_stream(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks)
    await subscribe(p, receiver, "a")
    stream = p.keys.changes(SITE, 0)
    await raw_redis.xadd(stream, {"v": "v1", "s": "vip"})  # no change, no time
    assert (await p.runner.run_once(T0)).read == 0
    assert await pending(p) == 0 and receiver.hits == []
    # The stream (and its group) deleted; the producer's next XADD recreates it.
    await raw_redis.delete(stream)
    [visitor] = same_shard_visitors(p.keys, 1)
    await emit(p, visitor, "vip", "entered")
    await p.runner.run_once(T0)  # finds no group, makes one from the stream's start
    await p.runner.run_once(T0)
    assert [h.body["visitor_id"] for h in receiver.of("a")] == [visitor]


async def test_deleted_or_paused_subscriptions_drop_their_retries(
    services: Services, raw_redis: aioredis.Redis, webhooks: WebhookClient, receiver: Receiver
) -> None:
    p = parts(services, raw_redis, webhooks, backoff_seconds=1.0)
    gone = await subscribe(p, receiver, "gone")
    paused = await subscribe(p, receiver, "paused")
    receiver.failures.update(gone=-1, paused=-1)
    await emit(p, "v1", "vip", "entered")
    assert (await p.runner.run_once(T0)).retrying == 2
    await p.service.delete(SITE, gone)
    await p.service.update(SITE, paused, {"active": False}, T0)
    assert (await p.runner.run_once(T0 + 10)).dropped == 2
    assert await p.runner.store.retries(SITE) == 0
    assert len(receiver.hits) == 2


@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_backoff_doubles_within_its_jitter_and_is_capped(rand: float) -> None:
    from segserver.jobs.triggers import backoff

    options = TriggerOptions(backoff_seconds=2.0, backoff_max_seconds=20.0)
    delays = [backoff(options, retry, rand) for retry in range(1, 7)]
    full = [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert delays == [d / 2 + d / 2 * rand for d in full]


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"retries": -1}, "trigger_retries"),
        ({"lease_seconds": 0}, "trigger_lease_seconds"),
        ({"concurrency": 0}, "trigger_concurrency"),
    ],
)
def test_bad_options_name_the_setting(options: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError, match=f"^{setting}:"):
        TriggerOptions(**options)
