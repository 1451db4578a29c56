"""Key names. Every key of a site carries the site id; every key of one visitor
carries the hash tag of the visitor's shard, `{<site>.<shard>}`, so that one Lua
script touching a visitor runs in one Redis Cluster slot. Site-wide keys carry
`{<site>}`.
"""

from __future__ import annotations

from dataclasses import dataclass

from segserver.profile.identity import shard_of


@dataclass(frozen=True, slots=True)
class VisitorKeys:
    shard: int
    profile: str
    event_ids: str
    shard_seq: str
    shard_ordinals: str
    membership: str  # hash: v (profile version evaluated), t (evaluation time)
    bits: str  # string bitmap: bit = segment slot
    history: str
    caps: str  # hash: frequency-cap counters
    arms: str  # hash: campaign -> arm of the first exposure (storage/results.py)
    recent: str  # list: recently viewed products (storage/recommendations.py)
    feedback: str  # hash: decision token|kind already counted (lua/finish_visitor.lua)

    def all(self) -> list[str]:
        """Every per-visitor key (the shard-wide ones excluded)."""
        return [self.profile, self.event_ids, self.membership, self.bits, self.history,
                self.caps, self.arms, self.recent, self.feedback]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    shards: int

    def shard_tag(self, site: str, shard: int) -> str:
        return f"{{{site}.{shard}}}"

    def visitor(self, site: str, visitor_id: str) -> VisitorKeys:
        shard = shard_of(visitor_id, self.shards)
        base = f"{self.prefix}:{self.shard_tag(site, shard)}"
        return VisitorKeys(
            shard,
            f"{base}:p:{visitor_id}",
            f"{base}:ev:{visitor_id}",
            f"{base}:seq",
            f"{base}:ords",
            f"{base}:m:{visitor_id}",
            f"{base}:mb:{visitor_id}",
            f"{base}:h:{visitor_id}",
            f"{base}:caps:{visitor_id}",
            f"{base}:arms:{visitor_id}",
            f"{base}:rv:{visitor_id}",
            f"{base}:fb:{visitor_id}",
        )

    def shard_key(self, site: str, shard: int, name: str) -> str:
        return f"{self.prefix}:{self.shard_tag(site, shard)}:{name}"

    def changes(self, site: str, shard: int) -> str:
        """The shard's stream of segment entries and exits (fields v s c t why)."""
        return self.shard_key(site, shard, "changes")

    def due(self, site: str, shard: int) -> str:
        """Sorted set: visitor → the next instant one of its time conditions may flip."""
        return self.shard_key(site, shard, "due")

    def claimed(self, site: str, shard: int) -> str:
        """Sorted set: visitor → end of the lease of the scheduler that claimed it."""
        return self.shard_key(site, shard, "claimed")

    def segment_bitmap(self, site: str, shard: int, slot: int) -> str:
        """Bitmap of one segment's members in the shard (bit = visitor ordinal)."""
        return self.shard_key(site, shard, f"seg:{slot}")

    def results(self, site: str, shard: int, campaign: str) -> str:
        """Hash of one campaign's result counters in the shard (summed over shards)."""
        return self.shard_key(site, shard, f"res:{campaign}")

    def popularity(self, site: str, shard: int, segment: str | None, kind: str, day: int) -> str:
        """Sorted set product -> views ("v") or units bought ("b") on one UTC day, by the
        shard's visitors (of `segment`, or all); summed over shards when read."""
        scope = "" if segment is None else f"s:{segment}:"
        return self.shard_key(site, shard, f"pop:{scope}{kind}:{day}")

    def profile_pattern(self, site: str, shard: int) -> str:
        """SCAN pattern of one shard's profiles."""
        return f"{self.prefix}:{self.shard_tag(site, shard)}:p:*"

    def dictionary(self, site: str, attr: str) -> tuple[str, str]:
        """(value → code hash, code → value list) of one attribute's dictionary."""
        base = f"{self.prefix}:{{{site}}}:dict:{attr}"
        return f"{base}:codes", f"{base}:values"

    def site_pattern(self, site: str) -> list[str]:
        """SCAN patterns covering every key of a site (site-wide and per shard)."""
        return [f"{self.prefix}:{{{site}}}:*", f"{self.prefix}:{{{site}.*}}:*"]
