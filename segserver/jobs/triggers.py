"""Trigger delivery: segment entries and exits POSTed to subscribed URLs.

Each site's per-shard change streams are read through one consumer group, so with
several server processes every change is handed to one runner (XREADGROUP); a
crashed runner's unacknowledged changes are taken over after the lease
(XAUTOCLAIM). A change is acknowledged once every matching subscription has had
its first attempt; a failed attempt goes to the site's retry schedule (exponential
back-off with jitter, claimed with a lease, see storage.changes) and, after the
last retry, to the site's dead-letter list with the last error. Delivery is
at-least-once: the idempotency key (`<shard>:<stream entry id>:<subscription id>`)
and the body are the same on every attempt and every re-drive.

Nothing here knows HTTP: the sender (segserver.http.webhooks) is a parameter.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import orjson

from segserver.catalogue.triggers import Subscription, TriggerService
from segserver.errors import ConfigError, SegserverError
from segserver.storage.changes import Change, ChangeStore
from segserver.storage.client import Client
from segserver.storage.keys import Keys
from segserver.storage.models import Records

log = logging.getLogger("segserver.triggers")

DELIVERY_FAILED = "delivery failed: no 2xx answer"
#: Exits of erased and expired visitors: deleted from the stream once handed over.
FORGET_CAUSES = frozenset({"erase", "expired"})
SIGNATURE_HEADER = "X-Segserver-Signature"
TIMESTAMP_HEADER = "X-Segserver-Timestamp"
IDEMPOTENCY_HEADER = "X-Segserver-Idempotency-Key"
ATTEMPT_HEADER = "X-Segserver-Attempt"


class Sender(Protocol):
    """POST `body` to `url` with `headers`, giving up after `timeout` seconds; returns
    the status code, raises SendError when no status came back. `networks`: internal
    networks (CIDR) the site allow-lists; every other internal address is refused."""

    def __call__(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        networks: Sequence[str] = ...,
    ) -> Awaitable[int]: ...


class SendError(SegserverError):
    """A delivery got no HTTP status (connection refused, time-out, TLS ...)."""

    code = "delivery_failed"


@dataclass(frozen=True)
class TriggerOptions:
    """Delivery settings; each is the setting `trigger_<name>`."""

    retries: int = 5  # retries after the first attempt, then the dead-letter list
    backoff_seconds: float = 1.0  # delay before the first retry; doubles each retry
    backoff_max_seconds: float = 600.0  # the delay never grows past this
    timeout_seconds: float = 5.0  # one POST, connect to last byte
    lease_seconds: float = 60.0  # a change or retry a runner holds longer is taken over
    poll_seconds: float = 0.5  # idle wait of the background runner; 0: none here
    dead_letters_max: int = 1000  # per site; the oldest are dropped
    batch: int = 32  # changes read per shard stream, and retries claimed, per step
    concurrency: int = 16  # POSTs in flight per runner

    def __post_init__(self) -> None:
        for name, low in [
            ("retries", 0),
            ("poll_seconds", 0),
            ("dead_letters_max", 1),
            ("batch", 1),
            ("concurrency", 1),
        ]:
            if getattr(self, name) < low:
                raise ConfigError(f"trigger_{name}: must be at least {low}")
        # claims of retries tell winners from losers by the lease (storage.changes)
        for name in ("backoff_seconds", "backoff_max_seconds", "timeout_seconds", "lease_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"trigger_{name}: must be more than 0")

    @classmethod
    def from_settings(cls, settings: Any) -> TriggerOptions:
        """Take `settings.trigger_<name>` where it exists, else the default."""
        given = {}
        for f in fields(cls):
            value = getattr(settings, f"trigger_{f.name}", None)
            if value is not None:
                given[f.name] = value
        return cls(**given)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: `sha256=<hex HMAC-SHA256 of "<timestamp>." + the
    raw body>`, so a captured delivery cannot be replayed with a fresh timestamp."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def backoff(options: TriggerOptions, retry: int, rand: float) -> float:
    """Delay before retry number `retry` (1-based): base · 2^(retry-1), capped, with
    "equal jitter" (a uniform half of it), so runners that failed together spread
    out and the delay still grows: in [d/2, d]."""
    full = min(options.backoff_max_seconds, options.backoff_seconds * 2.0 ** (retry - 1))
    return full / 2 + full / 2 * rand


@dataclass
class Delivery:
    """One change for one subscription, as kept between attempts (JSON)."""

    id: str  # the idempotency key
    site: str
    subscription: str
    body: str  # the JSON POSTed, byte for byte the same on every attempt
    first_at: float
    attempts: int = 0
    last_error: str = ""
    last_status: int | None = None

    def to_record(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_record(cls, record: str) -> Delivery:
        data = orjson.loads(record)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def payload(site: str, sub_id: str, change: Change) -> tuple[str, str]:
    """(delivery id, JSON body) of `change` for subscription `sub_id`. `at` is the
    time of the change in epoch seconds."""
    delivery_id = f"{change.shard}:{change.entry}:{sub_id}"
    body = {
        "id": delivery_id,
        "type": f"segment.{change.change}",
        "site": site,
        "subscription": sub_id,
        "visitor_id": change.visitor,
        "segment": change.segment,
        "change": change.change,
        "cause": change.cause,
        "at": change.at,
        "stream_entry": change.entry,
        "shard": change.shard,
    }
    return delivery_id, orjson.dumps(body).decode()


@dataclass
class RunStats:
    read: int = 0  # changes taken from the streams (new or taken over)
    delivered: int = 0
    retrying: int = 0  # failed attempts scheduled again
    dead: int = 0
    dropped: int = 0  # retries of deleted or paused subscriptions

    @property
    def busy(self) -> bool:
        return bool(self.read or self.delivered or self.retrying or self.dead or self.dropped)


@dataclass
class TriggerRunner:
    """Delivers due changes; `run_once(now)` is one step, `run_round()` one round of
    the supervised loop that `segserver serve` runs."""

    store: ChangeStore
    triggers: TriggerService
    sender: Sender
    options: TriggerOptions = field(default_factory=TriggerOptions)
    clock: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    consumer: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )
    #: called after every delivery attempt: a round waiting on slow receivers (up to
    #: `timeout_seconds` each) is making progress, not stuck (segserver.jobs.loop)
    progress: Callable[[], None] = lambda: None
    #: the internal networks a site allow-lists for its webhooks (site option
    #: `webhook_networks`); None: none anywhere
    networks_of: Callable[[str], Awaitable[Sequence[str]]] | None = None

    def __post_init__(self) -> None:
        self._limit = asyncio.Semaphore(self.options.concurrency)

    async def run_round(self) -> bool:
        """One round of the supervised loop (segserver.jobs.loop): a step; True when
        it found work (the next one starts at once), else the loop waits
        `poll_seconds`."""
        return (await self.run_once()).busy

    async def run_once(self, now: float | None = None) -> RunStats:
        """Deliver every change read now and every retry due at `now`."""
        at = self.clock() if now is None else now
        stats = RunStats()
        for site in await self.store.sites():
            await self._run_site(site, at, stats)
        return stats

    async def _run_site(self, site: str, now: float, stats: RunStats) -> None:
        lease_ms = int(self.options.lease_seconds * 1000)
        reads = await self.store.read(site, self.consumer, self.options.batch, lease_ms)
        retries = await self.store.claim_due(
            site, now, self.options.lease_seconds, self.options.batch
        )
        if not reads and not retries:
            return
        subs = {s.id: s for s in await self.triggers.list_all(site)}
        jobs: list[Awaitable[None]] = []
        for read in reads:
            stats.read += len(read.entries)
            for change in read.entries:
                for sub in subs.values():
                    if sub.wants(change.segment, change.change):
                        delivery_id, body = payload(site, sub.id, change)
                        delivery = Delivery(delivery_id, site, sub.id, body, now)
                        jobs.append(self._deliver(sub, delivery, now, stats, retry=False))
        for _, record in retries:
            delivery = Delivery.from_record(record)
            current = subs.get(delivery.subscription)
            if current is None or not current.active:
                stats.dropped += 1
                await self.store.finish(site, delivery.id)
                continue
            jobs.append(self._deliver(current, delivery, now, stats, retry=True))
        await asyncio.gather(*jobs)
        for read in reads:
            done = [c.entry for c in read.entries] + read.malformed
            gone = [c.entry for c in read.entries if c.cause in FORGET_CAUSES]
            await self.store.ack(site, read.shard, done, gone)

    async def _deliver(
        self, sub: Subscription, delivery: Delivery, now: float, stats: RunStats, retry: bool
    ) -> None:
        async with self._limit:
            ok = await self._attempt(sub, delivery, now)
        self.progress()
        await self.store.count_outcome(delivery.site, sub.id, ok, now)
        if ok:
            stats.delivered += 1
            if retry:
                await self.store.finish(delivery.site, delivery.id)
        elif delivery.attempts > self.options.retries and _forget(delivery):
            # an erased or expired visitor's exit: never kept as a dead letter naming it
            stats.dead += 1
            log.warning("delivery %s (an erasure or expiry exit) failed every retry; "
                        "dropped", delivery.id)  # fmt: skip
            if retry:
                await self.store.finish(delivery.site, delivery.id)
        elif delivery.attempts > self.options.retries:
            stats.dead += 1
            dead = orjson.loads(delivery.to_record())
            dead.update(url=sub.url, failed_at=now)
            await self.store.push_dead(
                delivery.site, orjson.dumps(dead).decode(), self.options.dead_letters_max
            )
            if retry:
                await self.store.finish(delivery.site, delivery.id)
        else:
            stats.retrying += 1
            due = now + backoff(self.options, delivery.attempts, self.rand())
            await self.store.schedule(delivery.site, delivery.id, delivery.to_record(), due)

    async def _attempt(self, sub: Subscription, delivery: Delivery, now: float) -> bool:
        delivery.attempts += 1
        body = delivery.body.encode()
        stamp = str(int(now))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(sub.secret, stamp, body),
            TIMESTAMP_HEADER: stamp,
            IDEMPOTENCY_HEADER: delivery.id,
            ATTEMPT_HEADER: str(delivery.attempts),
        }
        try:
            networks = await self.networks_of(delivery.site) if self.networks_of else ()
            status = await self.sender(sub.url, body, headers, self.options.timeout_seconds,
                                       networks)  # fmt: skip
        except Exception as exc:  # any sender failure is this delivery's, never the runner's
            log.info("delivery %s to %s failed: %s", delivery.id, sub.url, exc)
            status = 0
        if 200 <= status < 300:
            return True
        # One error for every failure: the dead letters must not tell a closed port
        # from a 500 (a port scanner); the operator's log has the reason.
        delivery.last_status = None
        delivery.last_error = DELIVERY_FAILED
        if status:
            log.info("delivery %s to %s: HTTP %s", delivery.id, sub.url, status)
        return False


def _forget(delivery: Delivery) -> bool:
    """Is this the exit of an erased or expired visitor?"""
    try:
        return orjson.loads(delivery.body).get("cause") in FORGET_CAUSES
    except (orjson.JSONDecodeError, AttributeError):
        return False


class DeadLetters:
    """The site's dead-letter list: read it and re-drive deliveries from it."""

    def __init__(self, store: ChangeStore) -> None:
        self.store = store

    async def read(
        self, site: str, subscription: str | None = None, limit: int = 100
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many there are, the newest `limit` of them, optionally of one
        subscription); each with its `payload` as JSON."""
        records = await self.store.dead(site)
        out = []
        for record in records:
            item = orjson.loads(record)
            if subscription is None or item.get("subscription") == subscription:
                item["payload"] = orjson.loads(item.pop("body"))
                out.append(item)
        return len(out), out[:limit]

    async def redrive(
        self,
        site: str,
        now: float,
        ids: list[str] | None = None,
        subscription: str | None = None,
    ) -> int:
        """Schedule the chosen dead letters (all by default) for delivery at `now`,
        each with a fresh set of retries; returns how many. Concurrent re-drives
        take each one once."""
        wanted = set(ids) if ids is not None else None
        count = 0
        for record in await self.store.dead(site):
            delivery = Delivery.from_record(record)
            if wanted is not None and delivery.id not in wanted:
                continue
            if subscription is not None and delivery.subscription != subscription:
                continue
            if not await self.store.take_dead(site, record):
                continue
            delivery.attempts = 0
            await self.store.schedule(site, delivery.id, delivery.to_record(), now)
            count += 1
        return count


def build_triggers(
    text_client: Client,
    keys: Keys,
    sender: Sender,
    options: TriggerOptions | None = None,
    clock: Callable[[], float] = time.time,
    **runner: Any,
) -> tuple[TriggerService, TriggerRunner, DeadLetters]:
    """Wire the trigger parts on a decoding Redis client (`Clients.text`); `runner`
    passes rand, consumer or progress on to the TriggerRunner."""
    store = ChangeStore(text_client, keys)
    service = TriggerService(Records(text_client, keys.prefix), store)
    run = TriggerRunner(
        ChangeStore(text_client, keys),
        service,
        sender,
        options or TriggerOptions(),
        clock,
        **runner,
    )
    return service, run, DeadLetters(store)
