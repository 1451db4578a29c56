"""What the admin page (segserver/admin/) needs beyond the catalogue API: the site's
schema for the rule builder, every segment's size with a size sparkline in one call,
rule checking and conversion between the JSON and the text form, a read-only explain
of one visitor and its membership history. Each answer is documented in docs/admin.md.

Nothing here writes: the explain reads the visitor's profile, stored membership and
cap counters (lua/apply_events.lua with no events only reads), evaluates and decides
as a page view would, and records no exposure, cap or membership change.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from segserver import decide as d
from segserver.catalogue.analytics import SegmentAnalytics
from segserver.catalogue.runtime import Runtime, SiteContext
from segserver.dsl import from_text, to_text
from segserver.dsl.text import RESERVED
from segserver.dsl.validate import _OPS as OPERATORS  # the compiler's own table
from segserver.engine import compile_rule
from segserver.engine import explain as explain_rules
from segserver.errors import NotFoundError, RuleError, ValidationError
from segserver.flows.after_events import AfterEvents
from segserver.flows.pageview import MAX_PLACEMENTS
from segserver.profile.identity import check_visitor_id
from segserver.profile.ingest import Ingestor
from segserver.profile.schema import STRING_KINDS, WINDOW_DAYS, Kind
from segserver.storage.membership import MembershipStore
from segserver.storage.profiles import ProfileStore

#: Known values of a category or tags attribute sent for auto-complete (first seen first).
MAX_VALUES = 200
#: Points of a size sparkline (the history is thinned evenly to at most this many).
MAX_POINTS = 200
MAX_TEXT = 20_000
PRESENCE = ("exists", "missing")


def operators(kind: Kind) -> list[str]:
    """The operators the rule compiler accepts on an attribute of this kind."""
    return [*OPERATORS[kind], *PRESENCE]


def thin(points: Sequence[tuple[float, int]], most: int) -> list[tuple[float, int]]:
    """At most `most` points, evenly spaced over the history, the newest always kept."""
    if len(points) <= most:
        return list(points)
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


@dataclass
class Console:
    runtime: Runtime
    analytics: SegmentAnalytics
    ingestor: Ingestor
    after: AfterEvents
    profiles: ProfileStore
    membership: MembershipStore

    async def schema(self, site_id: str) -> dict[str, Any]:
        """Every attribute the rules may use (built-in, custom, counted custom events)
        with its kind, whether it keeps a daily window, the operators its kind allows
        and, for strings, the values seen so far; the segments a rule may refer to."""
        ctx = await self.runtime.get(site_id)
        await self.runtime.refresh_dictionaries(ctx)
        schema = ctx.site.schema
        from_events = {a for e in schema.events for a in (e.count_attr, e.at_attr)}
        attributes = []
        for attr in ctx.data.schema.layout.attributes.values():
            source = (
                "built-in" if attr.builtin else "event" if attr.name in from_events else "custom"
            )
            item: dict[str, Any] = {
                "name": attr.name,
                "kind": attr.kind.value,
                "window": attr.window is not None,
                "source": source,
                "operators": operators(attr.kind),
                "text_form": attr.name not in RESERVED,
            }
            if attr.kind in STRING_KINDS:
                values = [v for v in ctx.data.vocab.of(attr.name).values if v]
                item["values"] = values[:MAX_VALUES]
            attributes.append(item)
        segments = [
            {"id": s.id, "name": s.name, "status": s.status, "type": s.type}
            for s in sorted(ctx.segments.values(), key=lambda s: s.id)
        ]
        return {
            "site": ctx.site.id,
            "attributes": attributes,
            "events": [e.to_json() for e in schema.events],
            "segments": segments,
            "window_days": WINDOW_DAYS,
            "duration_units": ["s", "m", "h", "d", "w"],
        }

    async def sizes(self, site_id: str, since: float, now: float, points: int) -> dict[str, Any]:
        """Every segment's size history since `since`, thinned to `points`, and its size
        now when it has stored members (active dynamic and static ones; the last point
        of their history is the size now). Drafts and archived segments have `size`
        null and keep the history recorded while they were active."""
        ctx = await self.runtime.get(site_id)
        segments = sorted(ctx.segments.values(), key=lambda s: s.id)
        counted = [s for s in segments if s.type == "static" or s.status == "active"]
        store = self.analytics.store
        now_sizes = dict(
            zip(
                [s.id for s in counted],
                await store.sizes(ctx.site.id, [s.slot for s in counted]),
                strict=True,
            )
        )
        histories = await asyncio.gather(
            *(store.history(ctx.site.id, s.slot, since) for s in segments)
        )
        out = {}
        for seg, history in zip(segments, histories, strict=True):
            size = now_sizes.get(seg.id)
            series = thin([*history, (now, size)] if size is not None else history, points)
            out[seg.id] = {"size": size, "history": [[t, n] for t, n in series]}
        return {"sizes": out, "at": now}

    async def check_rule(self, site_id: str, body: Any) -> dict[str, Any]:
        """`{"rule": {...}}` or `{"text": "..."}` (and `segment`, the id being edited,
        which the rule may not refer to) → the rule in both forms, or RuleError (422)
        whose message starts with the JSON path (`rule.all[1].value: ...`) or, for
        the text form, the character position (`text[12]: ...`)."""
        if not isinstance(body, dict):
            raise ValidationError("body: must be an object")
        unknown = set(body) - {"rule", "text", "segment"}
        if unknown:
            raise ValidationError(f"{sorted(unknown)[0]}: unknown field")
        if ("rule" in body) == ("text" in body):
            raise ValidationError("rule: give exactly one of rule (JSON) and text")
        editing = body.get("segment")
        if editing is not None and not isinstance(editing, str):
            raise ValidationError("segment: must be a segment id")
        ctx = await self.runtime.get(site_id)
        if "text" in body:
            text = body["text"]
            if not isinstance(text, str) or len(text) > MAX_TEXT:
                raise ValidationError(f"text: must be a string of at most {MAX_TEXT} characters")
            rule = from_text(text)
        else:
            rule = body["rule"]
        known = [s.id for s in ctx.segments.values() if s.status != "archived"]
        compile_rule(rule, ctx.data.schema.layout, ctx.data.vocab, known, segment_id=editing)
        try:
            text_form: str | None = to_text(rule)
        except RuleError:  # an attribute named like a keyword: valid JSON, no text form
            text_form = None
        return {"rule": rule, "text": text_form}

    async def explain(
        self, site_id: str, visitor_id: Any, placements: list[str] | None, now: float
    ) -> dict[str, Any]:
        """What a page view at `now` would answer for this visitor (segments and each
        placement's decision) and why: every segment's deciding clause with the values
        compared, every campaign considered and why it lost. Writes nothing."""
        ctx = await self.runtime.get(site_id)
        vid = check_visitor_id(visitor_id, "visitor id")
        if placements is None:
            placements = sorted(ctx.placements)[:MAX_PLACEMENTS]
        if await self.profiles.get(ctx.site.id, vid) is None:
            raise NotFoundError(f"visitor {vid!r} has no profile on site {ctx.site.id!r}")
        nothing = self.ingestor.prepare(ctx.data, [], now, visitor_id=vid)
        applied = (await self.ingestor.store(ctx.data, nothing, now, visitor_id=vid)).applied[vid]
        ev = self.after.evaluate(ctx, vid, applied, now)
        segments = ev.segments(ctx, applied.bits)
        sessions = float(ev.features[ctx.data.schema.layout["sessions"].index])
        periods = d.Periods.at(now, 0 if math.isnan(sessions) else int(sessions))
        outcome = d.decide(
            vid,
            placements,
            ctx.campaigns_in_order(),
            frozenset(segments),
            d.Counts(applied.caps, periods),
            ctx.policy,
            now,
            explain=True,
        )
        return {
            "visitor_id": vid,
            "at": now,
            "segments": segments,
            "decisions": {
                p: None
                if dec is None
                else {"campaign": dec.campaign, "variant": dec.variant, "content": dec.content}
                for p, dec in outcome.decisions.items()
            },
            "rules": readable(ctx, explain_rules(ev.program, ev.features, now)),
            "placements": {
                p: [{"campaign": c.campaign, "won": c.won, "reason": c.reason} for c in considered]
                for p, considered in outcome.considered.items()
            },
            "global_holdout": outcome.global_holdout,
            "held_out": [c for c, _ in outcome.held_out],
            "caps": applied.caps,
        }

    async def history(self, site_id: str, visitor_id: Any) -> dict[str, Any]:
        """The visitor's stored membership changes, oldest first (entered/exited, the
        segment, when and what caused it), and the segments its stored bits hold."""
        ctx = await self.runtime.get(site_id)
        vid = check_visitor_id(visitor_id, "visitor id")
        if await self.profiles.get(ctx.site.id, vid) is None:
            raise NotFoundError(f"visitor {vid!r} has no profile on site {ctx.site.id!r}")
        changes = await self.membership.history(ctx.site.id, vid)
        stored = await self.membership.read(ctx.site.id, vid)
        by_slot = {s.slot: s.id for s in ctx.segments.values()}
        held = sorted(by_slot[int(i)] for i in stored.slots() if int(i) in by_slot)
        return {"visitor_id": vid, "changes": changes, "stored": held}


def _clause(rule: Any, path: str) -> Any:
    """The node of `rule` at a compiler path (`rule.all[1].not`), or None."""
    node = rule
    for part in re.findall(r"[A-Za-z_]+|\[\d+\]", path)[1:]:
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return node


def _iso(value: Any) -> Any:
    if isinstance(value, int | float) and math.isfinite(value):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return value


def readable(ctx: SiteContext, explained: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Explanations in the values people wrote rules with: dictionary codes as their
    strings, instants as ISO 8601 UTC (the engine compares codes and epoch seconds)."""
    layout, vocab = ctx.data.schema.layout, ctx.data.vocab
    for entry in explained:
        seg = ctx.segments.get(entry["segment"])
        rule = seg.rule if seg is not None else None
        for step in entry["trace"]:
            clause = _clause(rule, step["path"])
            name = clause.get("attr") if isinstance(clause, dict) else None
            attr = layout.attributes.get(name) if isinstance(name, str) else None
            if attr is None or step.get("actual") is None:
                continue
            if attr.kind in STRING_KINDS:
                words = vocab.of(attr.name)
                codes = step["actual"] if isinstance(step["actual"], list) else [step["actual"]]
                values = [words.value(int(c)) for c in codes if isinstance(c, int | float)]
                step["actual"] = values if isinstance(step["actual"], list) else values[0]
            elif attr.kind in (Kind.TIMESTAMP, Kind.DATE):
                step["actual"] = _iso(step["actual"])
                if isinstance(step.get("ref"), int | float):
                    step["ref"] = _iso(step["ref"])
    return explained
