"""Bulk recompute: every visitor of a site, shard by shard, page by page.

A page (about `chunk` visitors, one HSCAN page of the shard's ordinal map) is read with
one MGET of its profiles (and one ZMSCORE of due instants when the recomputed rules
test time; storage.bulk), evaluated and diffed against the shard's segment bitmaps
(read once per shard) in a worker thread (jobs.diff), and only visitors whose bits or
due instant changed are committed, with lua/commit_membership.lua (which diffs again
inside its atomic call and keeps the version guard: an event committed meanwhile wins).
Reading the next page overlaps evaluating and committing the current one.

As a job (`start`), progress is durable: after each committed page the job record
holds the shard and HSCAN cursor to resume from, and a lease its owner renews. A job
whose owner died (lease expired) or that was stopped at a page boundary by a shutdown
(`interrupted`) is claimed and resumed by `resume_orphans` in any server process. So is
a job that failed on Redis (unreachable, too slow, refusing a command: StorageError,
e.g. its shard's primary failing over while the job record's node stays up): it is
tried again from its last committed page after `retry_seconds`, doubling, at most
`RETRIES` times; any other failure (the site deleted, ...) is final.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from segserver import engine
from segserver.catalogue.runtime import Runtime
from segserver.dsl.nodes import has_time
from segserver.engine import compile_rule
from segserver.errors import SegserverError, StorageError
from segserver.jobs.diff import Columns, diff_page, with_dependents
from segserver.storage.bulk import BulkReader, Page
from segserver.storage.jobs import JobStore
from segserver.storage.keys import Keys
from segserver.storage.membership import MembershipStore

log = logging.getLogger("segserver.recompute")
Progress = Callable[[int, int], None]
#: Called after each committed page: (shard, cursor after it, visitors so far).
Committed = Callable[[int, int, int], Awaitable[None]]
Paged = tuple[Page, list[bytes | None]]
#: Visitors per commit_membership call: one call blocks its Redis node while it runs.
COMMIT_BATCH = 500
#: Times a job that failed on Redis is tried again before its failure is final.
RETRIES = 8


@dataclass
class RecomputeStats:
    visitors: int = 0
    committed: int = 0  # visitors whose stored membership or due instant changed
    seconds: float = 0.0
    interrupted: bool = False  # stopped at a page boundary before the end


@dataclass(frozen=True)
class Start:
    """Where a run starts: shard, HSCAN cursor in it, visitors already done."""

    shard: int = 0
    cursor: int = 0
    done: int = 0


class Recomputer:
    def __init__(self, runtime: Runtime, reader: BulkReader, membership: MembershipStore,
                 keys: Keys, jobs: JobStore, chunk: int = 10_000,
                 lease_seconds: float = 15.0, retry_seconds: float = 30.0) -> None:  # fmt: skip
        self.runtime = runtime
        self.reader = reader
        self.membership = membership
        self.keys = keys
        self.jobs = jobs
        self.chunk = chunk
        self.lease_seconds = lease_seconds
        self.retry_seconds = retry_seconds
        self.owner = secrets.token_hex(6)
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(
        self, site_id: str, now: float, cause: str = "recompute", progress: Progress | None = None,
        total: int = 0, *, segments: Sequence[str] | None = None,
        shards: Sequence[int] | None = None, start: Start = Start(),
        committed: Committed | None = None,
    ) -> RecomputeStats:  # fmt: skip
        """Recompute the visitors of the site (of `shards`, default all, from `start`)
        with its current program at `now`; only the segments `segments` if given."""
        self.runtime.forget(site_id)
        ctx = await self.runtime.get(site_id)
        program = ctx.current_program()
        layout = ctx.data.schema.layout
        timed = program.has_time
        if segments is not None:
            rules = {s.id: s.rule for s in ctx.segments.values() if s.evaluated}
            segments = with_dependents(rules, segments)
            timed = any(has_time(compile_rule(rules[s], layout, None, rules)) for s in segments
                        if s in rules)  # fmt: skip
        columns = Columns.of(program, ctx.slots, segments, timed)
        engine.generate(program)  # used by evaluate_batch once compiled; never waited for
        stats = RecomputeStats(visitors=start.done)
        started = time.perf_counter()
        order = [s for s in (shards if shards is not None else range(self.keys.shards))
                 if s >= start.shard]  # fmt: skip
        pages = self._prefetch(site_id, order, start, columns)
        async for page, bitmaps in pages:
            diffed = await asyncio.to_thread(diff_page, program, layout, columns, page, bitmaps,
                                             now)  # fmt: skip
            for lo in range(0, len(diffed.changed), COMMIT_BATCH):
                batch = diffed.changed[lo : lo + COMMIT_BATCH]
                done = await self.membership.commit(
                    site_id, page.shard, batch, columns.slots.tolist(), columns.ids, cause, now
                )
                stats.committed += sum(done)
            stats.visitors += diffed.visitors
            if committed is not None:
                await committed(page.shard, page.cursor, stats.visitors)
            if progress is not None:
                progress(stats.visitors, total)
            if self.stopping.is_set() and not (page.cursor == 0 and page.shard == order[-1]):
                stats.interrupted = True
                break
        await pages.aclose()
        stats.seconds = time.perf_counter() - started
        return stats

    async def _prefetch(self, site: str, order: list[int], start: Start,
                        columns: Columns) -> AsyncGenerator[Paged]:  # fmt: skip
        """The pages of `order` with their shard's bitmaps of `columns` (read once per
        shard), the next page read while the current one is processed."""

        async def read_all(queue: asyncio.Queue[Paged | Exception | None]) -> None:
            slots = columns.slots.tolist()
            try:
                for shard in order:
                    cursor = start.cursor if shard == start.shard else 0
                    bitmaps = await self.reader.bitmaps(site, shard, slots)
                    async for page in self.reader.pages(site, shard, self.chunk, cursor=cursor,
                                                        due=columns.timed):  # fmt: skip
                        await queue.put((page, bitmaps))
            except Exception as exc:  # raised by the consumer: it would wait forever
                await queue.put(exc)
                return
            await queue.put(None)

        queue: asyncio.Queue[Paged | Exception | None] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(read_all(queue))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
            await reader
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    # -- jobs -----------------------------------------------------------------------------

    async def start(self, site_id: str, now: float, cause: str, total: int,
                    segments: Sequence[str] | None = None) -> str:  # fmt: skip
        """Run a recompute as a background job of this process; returns the job id."""
        job = f"{int(now)}-{secrets.token_hex(4)}"
        await self.jobs.save(site_id, job, {
            "id": job, "kind": "recompute", "cause": cause, "state": "running", "done": 0,
            "total": total, "started_at": now, "finished_at": "", "error": "", "at": repr(now),
            "segments": "" if segments is None else ",".join(segments), "shard": 0,
            "cursor": 0, "owner": self.owner, "lease": time.time() + self.lease_seconds,
        }, new=True)  # fmt: skip
        self._spawn(site_id, job, now, cause, total, segments, Start())
        return job

    def _spawn(self, site_id: str, job: str, now: float, cause: str, total: int,
               segments: Sequence[str] | None, start: Start,
               attempts: int = 0) -> None:  # fmt: skip
        async def committed(shard: int, cursor: int, done: int) -> None:
            await self.jobs.save(site_id, job, {
                "done": done, "shard": shard if cursor else shard + 1, "cursor": cursor,
                "lease": time.time() + self.lease_seconds,
            })  # fmt: skip

        async def work() -> None:
            try:
                stats = await self.run(site_id, now, cause, None, total, segments=segments,
                                       start=start, committed=committed)  # fmt: skip
                if stats.interrupted:
                    await self.jobs.save(site_id, job, {"state": "interrupted", "lease": 0})
                    return
                await self.jobs.save(site_id, job, {
                    "state": "done", "done": stats.visitors, "total": max(total, stats.visitors),
                    "finished_at": time.time(), "seconds": round(stats.seconds, 3),
                    "committed": stats.committed,
                })  # fmt: skip
            except SegserverError as exc:
                try:
                    await self._failed(site_id, job, exc, attempts + 1)
                except StorageError as unsaved:  # Redis out for the record too
                    log.error("recompute %s of site %s failed (%s) and could not be marked "
                              "(%s): resumed when its lease ends", job, site_id, exc.message,
                              unsaved.message)  # fmt: skip

        task = asyncio.create_task(work())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _failed(self, site: str, job: str, exc: SegserverError, attempts: int) -> None:
        """Record the `attempts`-th failed run of a job: to be tried again later if it
        failed on Redis, at most RETRIES times; final otherwise."""
        again = isinstance(exc, StorageError) and attempts <= RETRIES
        delay = self.retry_seconds * 2 ** (attempts - 1)
        if again:
            log.error("recompute %s of site %s failed (%s); tried again in %.0f s from its "
                      "last committed page", job, site, exc.message, delay)  # fmt: skip
        else:
            log.error("recompute %s of site %s failed: %s", job, site, exc.message)
        await self.jobs.save(site, job, {
            "state": "failed", "error": exc.message, "attempts": attempts, "lease": 0,
            "retry_at": repr(time.time() + delay) if again else "", "finished_at": time.time(),
        })  # fmt: skip

    async def resume_orphans(self, sites: Sequence[str]) -> int:
        """Claim and resume every job of `sites` left running by a dead process (lease
        expired), interrupted by a shutdown, or failed on Redis with its retry due; how
        many this process resumed."""
        resumed = 0
        for site in sites:
            for job in await self.jobs.recent(site):
                raw = await self.jobs.claim(site, job, self.owner, time.time(), self.lease_seconds)
                if raw is None:
                    continue
                segments = raw.get("segments") or None
                start = Start(int(raw.get("shard") or 0), int(raw.get("cursor") or 0),
                              int(raw.get("done") or 0))  # fmt: skip
                log.warning("resuming recompute %s of site %s at shard %d (%d visitors done)",
                            job, site, start.shard, start.done)  # fmt: skip
                at = float(raw.get("at") or raw.get("started_at") or time.time())
                self._spawn(site, job, at, raw.get("cause", "recompute"),
                            int(raw.get("total") or 0), segments.split(",") if segments else None,
                            start, int(raw.get("attempts") or 0))  # fmt: skip
                resumed += 1
        return resumed

    async def cancel(self, grace: float = 10.0) -> None:
        """Stop this process' running jobs at their next page boundary (shutdown): each
        is marked `interrupted`, to be resumed by the next process that starts."""
        self.stopping.set()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def wait(self) -> None:
        """Let every running job of this process finish (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
