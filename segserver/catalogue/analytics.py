"""Segment analytics: sizes, set expressions, overlap, live preview of a draft rule,
member export and static segments (uploaded or frozen). Stored membership (the
per-shard bitmaps) answers everything except the preview, which evaluates profiles.

Preview: exact when the site has at most `sample_size` visitors (API default 5 000),
otherwise an estimate from a uniform random sample of that many visitors with a 95 %
Wilson interval (finite-population corrected). The exact count reads every profile
(catalogue/exact.py): measured on 1 M seeded visitors on a busy 2-core machine
(`segserver bench segments`, docs/scale.md) it takes ~9 s, bound by reading; a
5 000-visitor sample takes ~45 ms and bounds the interval's half-width by 1.4 % of the
population (1.96 × √(0.25 / 5 000))."""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segserver.catalogue.exact import count_exact
from segserver.catalogue.runtime import SiteContext
from segserver.catalogue.segments import Segment, rule_refs
from segserver.engine import SegmentDef, build_program, compile_rule, evaluate_batch
from segserver.errors import NotFoundError, ValidationError
from segserver.profile import codec
from segserver.profile.schema import Kind
from segserver.storage.analytics import AnalyticsStore, Instruction, bitmap_ordinals
from segserver.storage.bulk import BulkReader
from segserver.storage.jobs import ShardReader

SAMPLE_IDS = 20
MAX_OVERLAP = 50
MAX_LEAVES = 50
MAX_DEPTH = 32
Z95 = 1.959964
#: Visitors per page of an exact preview (one HSCAN page and one MGET each).
EXACT_CHUNK = 10_000


@dataclass
class Expression:
    """A set expression compiled for lua/combine_segments.lua."""

    leaves: list[int]  # segment slots
    program: list[Instruction]


def usable(ctx: SiteContext, sid: Any, path: str) -> Segment:
    """A segment with stored members (active dynamic, or static), or a 4xx naming `path`."""
    if not isinstance(sid, str):
        raise ValidationError(f"{path}: must be a segment id (a string)")
    seg = ctx.segments.get(sid)
    if seg is None:
        raise NotFoundError(f"{path}: segment {sid!r} does not exist")
    if seg.type == "dynamic" and seg.status != "active":
        raise ValidationError(
            f"{path}: segment {sid!r} is {seg.status}; only active or static segments "
            "have stored members"
        )
    return seg


def compile_expression(ctx: SiteContext, expr: Any, path: str = "expression") -> Expression:
    """`"id"`, `{"or": [...]}`, `{"and": [..., {"not": ...}]}` → instructions.

    `not` is exclusion: it is allowed only inside an `and` with a positive operand
    (there is no universe to complement against)."""
    out = Expression([], [])
    slot_index: dict[int, int] = {}

    def leaf(sid: Any, at: str) -> int:
        seg = usable(ctx, sid, at)
        if seg.slot not in slot_index:
            if len(out.leaves) >= MAX_LEAVES:
                raise ValidationError(f"{at}: at most {MAX_LEAVES} segments in one expression")
            slot_index[seg.slot] = len(out.leaves)
            out.leaves.append(seg.slot)
        return slot_index[seg.slot]

    nodes: list[tuple[str, list[tuple[bool, Any, str]]]] = []

    def visit(node: Any, at: str) -> tuple[str, int]:
        if at.count(".") > MAX_DEPTH:
            raise ValidationError(f"{at}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, str):
            return ("leaf", leaf(node, at))
        if not isinstance(node, dict) or len(node) != 1:
            raise ValidationError(f"{at}: must be a segment id or one of and, or, not")
        (op, args), = node.items()  # fmt: skip
        if op == "not":
            raise ValidationError(f"{at}.not: only allowed as an operand of and (exclusion)")
        if op not in ("and", "or"):
            raise ValidationError(f"{at}: unknown operator {op!r} (and, or, not)")
        if not isinstance(args, list) or not args:
            raise ValidationError(f"{at}.{op}: must be a non-empty list")
        pos, neg = [], []
        for i, item in enumerate(args):
            here = f"{at}.{op}[{i}]"
            if op == "and" and isinstance(item, dict) and set(item) == {"not"}:
                neg.append(visit(item["not"], f"{here}.not"))
            else:
                pos.append(visit(item, here))
        if not pos:
            raise ValidationError(f"{at}.and: needs at least one operand that is not a not")
        nodes.append((op, [(True, r, "") for r in pos] + [(False, r, "") for r in neg]))
        return ("node", len(nodes) - 1)

    root = visit(expr, path)
    if root[0] == "leaf":
        nodes.append(("or", [(True, root, "")]))

    def ref(r: Any) -> int:
        kind, i = r
        return int(i) if kind == "leaf" else len(out.leaves) + int(i)

    for op, operands in nodes:
        out.program.append((op, [ref(r) for p, r, _ in operands if p],
                            [ref(r) for p, r, _ in operands if not p]))  # fmt: skip
    return out


def wilson(hits: int, n: int, population: int) -> tuple[float, float]:
    """95 % Wilson interval of a proportion, finite-population corrected."""
    if n == 0:
        return 0.0, 1.0
    fpc = (population - n) / (population - 1) if population > 1 else 0.0
    n_eff = n / max(fpc, 1e-12)
    p = hits / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n_eff)) / (1 + z2 / n_eff)
    half = Z95 * math.sqrt(p * (1 - p) / n_eff + z2 / (4 * n_eff * n_eff)) / (1 + z2 / n_eff)
    return max(0.0, centre - half), min(1.0, centre + half)


class SegmentAnalytics:
    def __init__(self, store: AnalyticsStore, reader: ShardReader, ttl_seconds: int,
                 bulk: BulkReader) -> None:  # fmt: skip
        self.store = store
        self.reader = reader
        self.ttl_seconds = ttl_seconds
        self.bulk = bulk

    async def size(self, site: str, seg: Segment) -> int:
        return (await self.store.sizes(site, [seg.slot]))[0]

    async def _sample_ids(self, site: str, picked: Sequence[tuple[int, int]]) -> list[str]:
        """Visitor ids of sampled (shard, ordinal), spread round-robin over shards."""
        by_shard: dict[int, list[int]] = {}
        for shard, ordinal in picked:
            by_shard.setdefault(shard, []).append(ordinal)
        found = await self.store.ids_of(site, by_shard)
        columns = [[v for v in ids if v] for ids in found.values()]
        out: list[str] = []
        for i in range(max((len(c) for c in columns), default=0)):
            out += [c[i] for c in columns if i < len(c)]
        return out[:SAMPLE_IDS]

    async def query(self, ctx: SiteContext, expr: Any) -> tuple[int, list[str], list[str]]:
        """(count, sample ids, per-shard result keys alive for a minute)."""
        compiled = compile_expression(ctx, expr)
        done = await self.store.combine(ctx.site.id, compiled.leaves, compiled.program,
                                        SAMPLE_IDS)  # fmt: skip
        return done.count, await self._sample_ids(ctx.site.id, done.sample), done.result_keys

    async def overlap(self, ctx: SiteContext, ids: Any) -> list[list[int]]:
        if not isinstance(ids, list) or not ids:
            raise ValidationError("ids: must be a non-empty list of segment ids")
        if len(ids) > MAX_OVERLAP:
            raise ValidationError(f"ids: at most {MAX_OVERLAP} segments (got {len(ids)})")
        slots = [usable(ctx, sid, f"ids[{i}]").slot for i, sid in enumerate(ids)]
        matrix = await self.store.overlap(ctx.site.id, slots)
        return [[int(v) for v in row] for row in matrix]

    # -- preview ----------------------------------------------------------------------

    async def preview(
        self, ctx: SiteContext, rule: Any, now: float, sample_size: int, seed: int | None
    ) -> dict[str, Any]:
        """Count and sample of a draft rule, exact or estimated (see the module doc)."""
        active = {s.id: s for s in ctx.segments.values() if s.evaluated}
        layout, vocab = ctx.data.schema.layout, ctx.data.vocab
        compile_rule(rule, layout, vocab, sorted(active))
        draft = next(f"preview-{i}" for i in range(len(active) + 1)
                     if f"preview-{i}" not in ctx.segments)  # fmt: skip
        # the draft and the segments it refers to, directly or not: nothing else counts
        needed, todo = set(), rule_refs(rule)
        while todo:
            sid = todo.pop()
            if sid in active and sid not in needed:
                needed.add(sid)
                todo |= rule_refs(active[sid].rule)
        defs = [active[sid].definition() for sid in sorted(needed)]
        program = build_program([*defs, SegmentDef(draft, rule)], layout, vocab)
        bit = program.segment_ids.index(draft)

        word, shift = bit >> 6, np.uint64(bit & 63)

        def matches(blobs: list[bytes]) -> np.ndarray[Any, np.dtype[np.bool_]]:
            block = codec.features_block(blobs, layout)
            words = np.zeros((len(blobs), program.words), np.uint64)
            evaluate_batch(program, block, now, words)
            return ((words[:, word] >> shift) & np.uint64(1)).astype(np.bool_)

        seqs, present = await self.store.population(ctx.site.id)
        population = sum(present)
        hits, n, sample = 0, 0, list[str]()
        exact = population <= sample_size
        if exact:
            hits, n, sample = await count_exact(self.bulk, ctx.site.id, range(len(seqs)),
                                                program, bit, layout, now, EXACT_CHUNK,
                                                SAMPLE_IDS)  # fmt: skip
        else:
            rng = np.random.default_rng(seed)
            cuts = np.cumsum([0, *seqs])
            positions = np.sort(rng.choice(int(cuts[-1]), sample_size, replace=False))
            shards = np.searchsorted(cuts, positions, side="right") - 1
            by_shard = {int(s): (positions[shards == s] - cuts[s]).tolist()
                        for s in np.unique(shards)}  # fmt: skip
            found = await self.store.ids_of(ctx.site.id, by_shard)
            known = {s: [v for v in vs if v] for s, vs in found.items()}
            read = await self.store.shard_profiles(ctx.site.id, known)
            got = [(v, b) for s, blobs in read.items()
                   for v, b in zip(known[s], blobs, strict=True) if b is not None]  # fmt: skip
            ok = await asyncio.to_thread(matches, [b for _, b in got])
            hits, n = int(ok.sum()), len(got)
            sample = [v for (v, _), m in zip(got, ok, strict=True) if m]
        out: dict[str, Any] = {"population": population, "sample": sample[:SAMPLE_IDS]}
        if exact:
            return {**out, "exact": True, "method": "exact", "count": hits}
        lo, hi = wilson(hits, n, population)
        low = max(hits, math.floor(lo * population))
        high = min(population - (n - hits), math.ceil(hi * population))
        return {**out, "exact": False, "method": "sample", "count": round(hits / n * population)
                if n else 0, "sample_size": n, "sample_hits": hits, "confidence": 0.95,
                "interval": [low, high]}  # fmt: skip

    # -- export -----------------------------------------------------------------------

    async def export_csv(
        self, ctx: SiteContext, seg: Segment, attrs: Sequence[str], chunk: int = 1000
    ) -> AsyncIterator[bytes]:
        """CSV of the segment's members (visitor_id, then `attrs` decoded by name), shard
        by shard and `chunk` members at a time: memory stays bounded by one chunk."""
        layout = ctx.data.schema.layout
        for i, name in enumerate(attrs):
            if name not in layout:
                raise ValidationError(f"attrs[{i}]: unknown attribute {name!r}")
        site = ctx.site.id
        yield _csv_line(["visitor_id", *attrs])
        for shard in range(self.store.keys.shards):
            key = self.store.keys.segment_bitmap(site, shard, seg.slot)
            (bits,) = await self.store.bitmaps([key])
            ordinals = bitmap_ordinals(bits)
            for lo in range(0, len(ordinals), chunk):
                part = ordinals[lo : lo + chunk].tolist()
                ids = [v for v in (await self.store.ids_of(site, {shard: part}))[shard] if v]
                blobs: list[bytes | None] = [None] * len(ids)
                if attrs and ids:
                    blobs = (await self.store.shard_profiles(site, {shard: ids}))[shard]
                buf = io.StringIO()
                writer = csv.writer(buf, lineterminator="\n")
                for vid, blob in zip(ids, blobs, strict=True):
                    values = codec.to_json(blob, layout, ctx.data.vocab)["attributes"] \
                        if blob is not None else {}  # fmt: skip
                    writer.writerow([_safe(vid), *(_cell(values.get(a), layout[a].kind)
                                                   for a in attrs)])  # fmt: skip
                yield buf.getvalue().encode()

    # -- static segments --------------------------------------------------------------

    async def write_static(
        self, site: str, seg: Segment, ids: Sequence[str], *, replace: bool
    ) -> tuple[int, list[str]]:
        """Set a static segment's members (or add to them); (added, ids without profile)."""
        by_shard: dict[int, list[str]] = {s: [] for s in range(self.store.keys.shards)}
        for vid in dict.fromkeys(ids):
            by_shard[self.store.keys.visitor(site, vid).shard].append(vid)
        added, unknown = 0, list[str]()
        for shard, group in by_shard.items():
            if group or replace:
                n, missing = await self.store.set_static(site, shard, seg.slot, group,
                                                         replace=replace,
                                                         ttl_seconds=self.ttl_seconds)  # fmt: skip
                added, unknown = added + n, unknown + missing
        return added, unknown

    async def members_of(self, site: str, bitmaps: Sequence[bytes | None]) -> list[str]:
        """Visitor ids set in per-shard bitmaps (a segment at a moment, or a result)."""
        by_shard = {s: bitmap_ordinals(b).tolist() for s, b in enumerate(bitmaps)}
        found = await self.store.ids_of(site, by_shard)
        return [v for ids in found.values() for v in ids if v]


def _cell(value: Any, kind: Kind) -> str:
    if value is None:
        return ""
    if kind is Kind.TAGS:
        return _safe("|".join(str(v) for v in value))
    if kind is Kind.FLAG:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)  # a number ("-5") is data, not a formula
    return _safe(str(value))


#: What makes a spreadsheet read a cell as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")


def _safe(text: str) -> str:
    """A text cell a spreadsheet shows as text: one leading `'` if it could start a
    formula (`=HYPERLINK(...)`, `+1`, `@SUM(...)`); visitor ids and attribute values
    come from outside."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_line(cells: Sequence[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_safe(c) for c in cells])
    return buf.getvalue().encode()
