"""The CPU work of one page of bulk recompute (runs in a worker thread; the decoder,
the rule kernels and `next_change_batch` release the GIL).

A page is decoded into one feature block, evaluated in one call, and diffed in one
vectorised step against what is stored: the membership bitmap of each visitor (only
the slots of the segments being recomputed) and its due instant. Only visitors whose
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


@dataclass(frozen=True, slots=True)
class Columns:
    """The segments a recompute covers: their bits in the program and stored slots."""

    bits: I64
    slots: I64
    ids: tuple[str, ...]

    @classmethod
    def of(cls, program: Program, slots: I64, only: Sequence[str] | None) -> Columns:
        """Every segment of the program, or those of `only` that it evaluates."""
        chosen = [i for i, sid in enumerate(program.segment_ids) if only is None or sid in only]
        bits = np.array(chosen, np.int64)
        return cls(bits, slots[bits], tuple(program.segment_ids[i] for i in chosen))


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


def stored_bits(bits: list[bytes | None], slots: I64) -> npt.NDArray[np.uint8]:
    """(N, len(slots)) 0/1: each stored bitmap's bit at each slot (SETBIT order:
    slot s is bit 7 - s % 8 of byte s // 8; a missing or short bitmap reads 0)."""
    n = len(bits)
    if not len(slots):
        return np.zeros((n, 0), np.uint8)
    width = int(slots.max()) // 8 + 1
    raw = b"".join((b or b"")[:width].ljust(width, b"\0") for b in bits)
    table = np.frombuffer(raw, np.uint8).reshape(n, width)
    shifts = (7 - (slots & 7)).astype(np.uint8)
    return (table[:, slots >> 3] >> shifts) & np.uint8(1)


def diff_page(program: Program, layout: Layout, columns: Columns, page: Page,
              now: float) -> Diffed:  # fmt: skip
    """Evaluate the page's profiles at `now`; those whose stored state differs."""
    rows = [i for i, blob in enumerate(page.profiles) if blob is not None]
    if not rows:
        return Diffed(0, [])
    blobs: list[bytes] = [page.profiles[i] for i in rows]  # type: ignore[misc]
    block = codec.features_block(blobs, layout)
    words = np.zeros((len(rows), max(program.words, 1)), np.uint64)
    evaluate_batch(program, block, now, words)
    cols = columns.bits
    values = ((words[:, cols >> 6] >> (cols & 63).astype(np.uint64)) & np.uint64(1)).astype(
        np.uint8
    )
    nxt = np.empty(len(rows), np.float64)
    next_change_batch(program, block, now, nxt)
    assert page.bits is not None and page.due is not None, "read with membership=True"
    old = stored_bits([page.bits[i] for i in rows], columns.slots)
    due = np.array([np.inf if page.due[i] is None else page.due[i] for i in rows], np.float64)
    ordinals = block[:, H_ORDINAL]
    moved = (values != old).any(axis=1) | (nxt != due)
    picked = np.flatnonzero(moved & ~np.isnan(ordinals))
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
