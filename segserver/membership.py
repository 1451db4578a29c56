"""Evaluate profiles with a site's program and commit the result as stored membership.

Used by the event path (cause "event"), the expiry scheduler ("expiry") and bulk
recompute ("recompute" / "edit"). Lookups never read what is stored here: they
evaluate the profile at request time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from segserver.catalogue.runtime import SiteContext
from segserver.engine import evaluate, next_change
from segserver.profile import codec
from segserver.profile.schema import H_ORDINAL, H_VERSION
from segserver.storage.keys import Keys
from segserver.storage.membership import Evaluated, MembershipStore


def bits_to_values(words: npt.NDArray[np.uint64], count: int) -> npt.NDArray[np.bool_]:
    """Bit i of a little-endian uint64 bitset, for i < count."""
    flat = np.unpackbits(words.view(np.uint8), bitorder="little")[:count]
    return flat.astype(np.bool_)


def evaluate_visitor(
    ctx: SiteContext, visitor_id: str, blob: bytes, now: float
) -> Evaluated | None:
    """The visitor's membership at `now`; None if it has no profile ordinal yet."""
    program = ctx.current_program()
    features = codec.features(blob, ctx.data.schema.layout)
    ordinal = float(features[H_ORDINAL])
    if math.isnan(ordinal):
        return None
    words = np.zeros(max(program.words, 1), np.uint64)
    evaluate(program, features, now, words)
    values = bits_to_values(words, len(program.segment_ids))
    return Evaluated(
        visitor_id, int(ordinal), float(features[H_VERSION]), now, values,
        next_change(program, features, now),
    )  # fmt: skip


async def commit(
    store: MembershipStore, keys: Keys, ctx: SiteContext, items: Iterable[Evaluated],
    cause: str, now: float,
) -> int:  # fmt: skip
    """Commit evaluations (any shards) made with `ctx`'s program; how many committed."""
    by_shard: dict[int, list[Evaluated]] = defaultdict(list)
    for item in items:
        by_shard[keys.visitor(ctx.site.id, item.visitor_id).shard].append(item)
    program = ctx.current_program()
    slots = [int(s) for s in ctx.slots]
    done = 0
    for shard, group in by_shard.items():
        results = await store.commit(ctx.site.id, shard, group, slots, program.segment_ids,
                                     cause, now)  # fmt: skip
        done += sum(results)
    return done


async def record_events(
    store: MembershipStore, keys: Keys, ctx: SiteContext, profiles: Mapping[str, bytes],
    now: float,
) -> int:  # fmt: skip
    """After an event batch: evaluate each touched visitor and commit (cause "event")."""
    items = [
        item for vid, blob in profiles.items()
        if (item := evaluate_visitor(ctx, vid, blob, now)) is not None
    ]  # fmt: skip
    return await commit(store, keys, ctx, items, "event", now)
