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

from segserver.errors import SegserverError, StorageError, ValidationError
from segserver.profile.events import Event, EventCatalog, Limits, Plan, plan_ops, validate_event
from segserver.profile.schema import Schema
from segserver.profile.vocabulary import Vocabulary
from segserver.storage.dictionary import DictionaryStore
from segserver.storage.profiles import Applied, ProfileStore

STORED, DUPLICATE, REJECTED, NOT_STORED = "stored", "duplicate", "rejected", "not_stored"


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

    async def ingest(
        self,
        site: SiteData,
        raw_events: Sequence[Any],
        now: float,
        visitor_id: str | None = None,
        path: str = "events",
    ) -> IngestResult:
        """Store `raw_events`. With `visitor_id`, events belong to it (and omit their own),
        and its profile is read even when no event is valid (a page view's lookup)."""
        results = [EventResult(i, REJECTED) for i in range(len(raw_events))]
        planned: list[tuple[int, Event, Plan]] = []
        for i, raw in enumerate(raw_events):
            try:
                event = validate_event(
                    raw, f"{path}[{i}]", site.catalog, self.limits, now, visitor_id
                )
                planned.append((i, event, plan_ops(event, site.catalog, self.limits)))
            except ValidationError as exc:
                results[i].error = exc
        await self._encode_strings(site, [p for _, _, p in planned])

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
                (ev.event_id, plan.pack(lambda a, v: _code(site.vocab, a, v)))
                for _, ev, plan in items
            ]
            try:
                done = await self.profiles.apply(site.id, vid, layout, batch, now)
            except StorageError as exc:
                for i, _, _ in items:
                    results[i] = EventResult(i, NOT_STORED, exc)
                if vid == visitor_id:
                    read_error.append(exc)
                return
            profiles[vid] = done.profile
            applied[vid] = done
            for (i, ev, _), ok in zip(items, done.applied, strict=True):
                results[i].status = STORED if ok else DUPLICATE
                if ok:
                    stored_events.append(ev)

        await asyncio.gather(*(apply(v, items) for v, items in by_visitor.items()))
        if read_error:
            raise read_error[0]
        failed = [r for r in results if r.status == NOT_STORED]
        if failed and len(failed) == len(planned):
            assert failed[0].error is not None
            raise failed[0].error
        return IngestResult(results, profiles, applied, stored_events)

    async def _encode_strings(self, site: SiteData, plans: Sequence[Plan]) -> None:
        missing: dict[str, set[str]] = defaultdict(set)
        for plan in plans:
            for attr, value in plan.strings():
                if site.vocab.of(attr).code(value) is None:
                    missing[attr].add(value)
        for attr, values in missing.items():
            ordered = sorted(values)
            codes = await self.dictionary.assign(site.id, attr, ordered)
            for value, code in zip(ordered, codes, strict=True):
                site.vocab.add(attr, value, code)


def _code(vocab: Vocabulary, attr: str, value: str) -> int:
    code = vocab.of(attr).code(value)
    assert code is not None, (attr, value)  # _encode_strings ran first
    return code
