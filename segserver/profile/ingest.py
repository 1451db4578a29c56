"""Event ingestion: validate, encode strings, apply per visitor in one Lua call each.

An invalid event is reported and never applied; the valid events of a batch are
applied (per visitor, atomically and in order) whatever the invalid ones were.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from segserver.errors import SegserverError, StorageError, StorageTimeout, ValidationError
from segserver.profile.events import Event, EventCatalog, Limits, Plan, plan_ops, validate_event
from segserver.profile.schema import Schema
from segserver.profile.vocabulary import Vocabulary
from segserver.storage.dictionary import OTHER, DictionaryStore
from segserver.storage.profiles import Applied, ProfileStore

STORED, DUPLICATE, REJECTED = "stored", "duplicate", "rejected"
# Not applied, known: Redis refused or could not be reached before the write was sent.
NOT_STORED = "not_stored"
# Sent, answer not seen in time: it may have been applied. A retry with the same
# event id is safe (never counted twice); without an event id it may double-count.
PENDING = "pending"


@dataclass
class SiteData:
    """What ingestion needs of a site: its schema, event types and dictionaries."""

    id: str
    schema: Schema
    catalog: EventCatalog
    vocab: Vocabulary = field(default_factory=Vocabulary)

    @classmethod
    def of(cls, site_id: str, schema: Schema, vocab: Vocabulary | None = None) -> SiteData:
        return cls(site_id, schema, EventCatalog(schema), vocab or Vocabulary())


@dataclass
class EventResult:
    index: int
    status: str
    error: SegserverError | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        return out


@dataclass
class Prepared:
    """Validated events: a result per event (rejected ones carry their error) and the
    planned ops of the valid ones, (index, event, plan) in request order."""

    results: list[EventResult]
    planned: list[tuple[int, Event, Plan]]


@dataclass
class IngestResult:
    results: list[EventResult]
    profiles: dict[str, bytes]  # visitor id → profile after its batch
    applied: dict[str, Applied] = field(default_factory=dict)  # what the Lua call returned
    stored_events: list[Event] = field(default_factory=list)  # applied (not duplicates)

    @property
    def stored(self) -> int:
        return sum(r.status == STORED for r in self.results)


class Ingestor:
    def __init__(self, profiles: ProfileStore, dictionary: DictionaryStore, limits: Limits) -> None:
        self.profiles = profiles
        self.dictionary = dictionary
        self.limits = limits

    def prepare(
        self,
        site: SiteData,
        raw_events: Sequence[Any],
        now: float,
        visitor_id: str | None = None,
        path: str = "events",
        trusted: bool = False,
    ) -> Prepared:
        """Validate every event and plan its ops (pure: nothing is read or written). An
        invalid event is marked rejected with its error; the others are planned.
        Unless `trusted` (the caller holds the site's server key), trusted event types
        are rejected: secure by default, so the page view (a browser's call) never
        passes it."""
        results = [EventResult(i, REJECTED) for i in range(len(raw_events))]
        planned: list[tuple[int, Event, Plan]] = []
        for i, raw in enumerate(raw_events):
            try:
                event = validate_event(
                    raw, f"{path}[{i}]", site.catalog, self.limits, now, visitor_id, trusted
                )
                planned.append((i, event, plan_ops(event, site.catalog, self.limits)))
            except ValidationError as exc:
                results[i].error = exc
        return Prepared(results, planned)

    async def store(
        self, site: SiteData, prepared: Prepared, now: float, visitor_id: str | None = None
    ) -> IngestResult:
        """Apply the planned events, per visitor atomically and in order. With
        `visitor_id`, its profile is read even when no event is valid (a page view's
        lookup), and a failure to reach Redis for it raises."""
        results = prepared.results
        planned = prepared.planned
        fresh = await self._encode_strings(site, [p for _, _, p in planned])

        by_visitor: dict[str, list[tuple[int, Event, Plan]]] = defaultdict(list)
        if visitor_id is not None:
            by_visitor[visitor_id] = []
        for item in planned:
            by_visitor[item[1].visitor_id].append(item)
        profiles: dict[str, bytes] = {}
        applied: dict[str, Applied] = {}
        stored_events: list[Event] = []
        read_error: list[StorageError] = []
        layout = site.schema.layout

        async def apply(vid: str, items: list[tuple[int, Event, Plan]]) -> None:
            batch = [
                (ev.event_id, plan.pack(lambda a, v: _code(site.vocab, fresh, a, v)))
                for _, ev, plan in items
            ]
            try:
                done = await self.profiles.apply(site.id, vid, layout, batch, now)
            except StorageError as exc:
                for i, _, _ in items:
                    results[i] = EventResult(i, PENDING if _maybe_done(exc) else NOT_STORED, exc)
                if vid == visitor_id:
                    read_error.append(exc)
                return
            profiles[vid] = done.profile
            applied[vid] = done
            for (i, ev, _), ok in zip(items, done.applied, strict=True):
                results[i].status = STORED if ok else DUPLICATE
                if ok:
                    stored_events.append(ev)

        if len(by_visitor) == 1:  # the page-view case: no task, no extra loop turn
            ((vid, items),) = by_visitor.items()
            await apply(vid, items)
        else:
            await asyncio.gather(*(apply(v, items) for v, items in by_visitor.items()))
        if read_error:
            raise read_error[0]
        failed = [r for r in results if r.status in (NOT_STORED, PENDING)]
        if failed and len(failed) == len(planned):
            assert failed[0].error is not None
            raise failed[0].error
        return IngestResult(results, profiles, applied, stored_events)

    async def ingest(
        self,
        site: SiteData,
        raw_events: Sequence[Any],
        now: float,
        visitor_id: str | None = None,
        path: str = "events",
        trusted: bool = True,
    ) -> IngestResult:
        """`prepare` then `store` (in-process callers: trusted unless told otherwise)."""
        prepared = self.prepare(site, raw_events, now, visitor_id, path, trusted)
        return await self.store(site, prepared, now, visitor_id)

    async def _encode_strings(self, site: SiteData, plans: Sequence[Plan]
                              ) -> dict[tuple[str, str], int]:  # fmt: skip
        """Codes for the strings the cache does not know (assigned in Redis), also
        returned: a value past the site's cap is not always cached."""
        assigned: dict[tuple[str, str], int] = {}
        missing: dict[str, set[str]] = defaultdict(set)
        for plan in plans:
            for attr, value in plan.strings():
                if site.vocab.of(attr).code(value) is None:
                    missing[attr].add(value)
        for attr, values in missing.items():
            ordered = sorted(values)
            codes = await self.dictionary.assign(site.id, attr, ordered)
            for value, code in zip(ordered, codes, strict=True):
                if code > self.dictionary.max_codes:  # past the cap: the "(other)" code
                    site.vocab.add(attr, OTHER, code)
                site.vocab.add(attr, value, code)
                assigned[(attr, value)] = code
        return assigned


def _code(vocab: Vocabulary, fresh: dict[tuple[str, str], int], attr: str, value: str) -> int:
    code = vocab.of(attr).code(value) or fresh.get((attr, value))
    assert code is not None, (attr, value)  # _encode_strings ran first
    return code


def _maybe_done(exc: StorageError) -> bool:
    """Could the write behind `exc` have been applied anyway? A time-out: yes (the
    script may have run; only its answer is missing)."""
    return isinstance(exc, StorageTimeout)
