"""The CPU work of one page of bulk recompute (runs in a worker thread; the decoder,
the rule kernels and `next_change_batch` release the GIL).

A page is decoded into one feature block, evaluated in one call, and diffed in one
vectorised step against what is stored: the shard's segment bitmaps (one bit per
visitor ordinal, kept equal to each visitor's own bitmap by the commit script) and,
when the recomputed rules test time, each visitor's due instant. Only visitors whose
bits or due instant differ are returned to be committed; the commit script diffs
again inside its atomic call, so an event committed meanwhile still wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from segserver.catalogue.segments import rule_refs
from segserver.engine import Program, evaluate_batch, next_change_batch
from segserver.profile import codec
from segserver.profile.schema import H_ORDINAL, H_VERSION, Layout
from segserver.storage.bulk import Page
from segserver.storage.membership import Evaluated

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Columns:
    """The segments a recompute covers: their bits in the program, stored slots, ids,
    and whether any of their rules tests time (then every visitor's due instant is
    recomputed and compared; otherwise only those of visitors whose bits changed)."""

    bits: I64
    slots: I64
    ids: tuple[str, ...]
    timed: bool

    @classmethod
    def of(cls, program: Program, slots: I64, only: Sequence[str] | None,
           timed: bool) -> Columns:  # fmt: skip
        """Every segment of the program, or those of `only` that it evaluates."""
        chosen = [i for i, sid in enumerate(program.segment_ids) if only is None or sid in only]
        bits = np.array(chosen, np.int64)
        return cls(bits, slots[bits], tuple(program.segment_ids[i] for i in chosen), timed)


def with_dependents(rules: Mapping[str, Any], changed: Sequence[str]) -> list[str]:
    """`changed` and every segment whose rule refers to one of them, directly or not
    (their membership may change with it); `rules`: segment id → rule."""
    refs = {sid: rule_refs(rule) for sid, rule in rules.items()}
    out = set(changed)
    grown = True
    while grown:
        more = {sid for sid, r in refs.items() if sid not in out and r & out}
        out |= more
        grown = bool(more)
    return sorted(out)


@dataclass(slots=True)
class Diffed:
    visitors: int  # profiles evaluated
    changed: list[Evaluated]  # those to commit


def bits_at(bitmaps: Sequence[bytes | None], ordinals: I64) -> U8:
    """(N, len(bitmaps)) 0/1: each bitmap's bit at each ordinal (SETBIT order: bit o
    is bit 7 - o % 8 of byte o // 8; past a bitmap's end, 0)."""
    out = np.zeros((len(ordinals), len(bitmaps)), np.uint8)
    if not len(ordinals):
        return out
    byte, shift = ordinals >> 3, (7 - (ordinals & 7)).astype(np.uint8)
    for j, raw in enumerate(bitmaps):
        table = np.frombuffer(raw or b"", np.uint8)
        inside = byte < len(table)
        out[inside, j] = (table[byte[inside]] >> shift[inside]) & np.uint8(1)
    return out


def diff_page(program: Program, layout: Layout, columns: Columns, page: Page,
              bitmaps: Sequence[bytes | None], now: float) -> Diffed:  # fmt: skip
    """Evaluate the page's profiles at `now`; those whose stored state differs from
    `bitmaps` (the shard's, of `columns.slots`) and, if timed, from `page.due`."""
    rows = [i for i, blob in enumerate(page.profiles) if blob is not None]
    if not rows:
        return Diffed(0, [])
    blobs: list[bytes] = [page.profiles[i] for i in rows]  # type: ignore[misc]
    block = codec.features_block(blobs, layout)
    words = np.zeros((len(rows), max(program.words, 1)), np.uint64)
    evaluate_batch(program, block, now, words)
    cols = columns.bits
    shifts = (cols & 63).astype(np.uint64)
    values = ((words[:, cols >> 6] >> shifts) & np.uint64(1)).astype(np.uint8)
    ordinals = block[:, H_ORDINAL]
    known = ~np.isnan(ordinals)
    old = bits_at(bitmaps, np.where(known, ordinals, 0).astype(np.int64))
    moved = (values != old).any(axis=1)
    nxt = np.full(len(rows), np.inf)
    if columns.timed:
        assert page.due is not None, "a timed recompute reads due instants"
        next_change_batch(program, block, now, nxt)
        due = np.array([np.inf if page.due[i] is None else page.due[i] for i in rows])
        moved |= nxt != due
    picked = np.flatnonzero(moved & known)
    if not columns.timed and len(picked):
        some = np.empty(len(picked), np.float64)
        next_change_batch(program, np.ascontiguousarray(block[picked]), now, some)
        nxt[picked] = some
    versions = block[:, H_VERSION]
    changed = [
        Evaluated(
            page.ids[rows[r]],
            int(ordinals[r]),
            float(versions[r]),
            now,
            values[r].astype(np.bool_),
            float(nxt[r]),
        )
        for r in picked.tolist()
    ]
    return Diffed(len(rows), changed)
