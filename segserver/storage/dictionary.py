"""The master copy of each site's string dictionaries (value ↔ code) in Redis."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from segserver.profile.vocabulary import Vocabulary
from segserver.storage.client import Client
from segserver.storage.errors import wrapped
from segserver.storage.keys import Keys
from segserver.storage.scripts import Scripts

#: The value every string past an attribute's cap is encoded as.
OTHER = "(other)"


class DictionaryStore:
    def __init__(self, client: Client, scripts: Scripts, keys: Keys,
                 max_codes: int = 10_000) -> None:  # fmt: skip
        self.client = client
        self.scripts = scripts
        self.keys = keys
        self.max_codes = max_codes

    async def assign(self, site: str, attr: str, values: Sequence[str]) -> list[int]:
        """Codes of `values`, assigning new ones atomically (idempotent); past
        `max_codes` of the attribute, new values get the code of OTHER."""
        codes_key, values_key = self.keys.dictionary(site, attr)
        codes = await self.scripts.call("assign_codes", [codes_key, values_key],
                                        [self.max_codes, OTHER, *values])  # fmt: skip
        return [int(c) for c in codes]

    async def refresh(self, site: str, vocab: Vocabulary, attrs: Iterable[str]) -> None:
        """Add to `vocab` every code assigned since it was last refreshed (by anyone)."""
        names = list(attrs)
        with wrapped("reading dictionaries"):
            async with self.client.pipeline(transaction=False) as pipe:
                for attr in names:
                    pipe.lrange(
                        self.keys.dictionary(site, attr)[1], vocab.of(attr).known_prefix(), -1
                    )
                results = await pipe.execute()
        for attr, new in zip(names, results, strict=True):
            start = vocab.of(attr).known_prefix()
            for i, raw in enumerate(new):
                value = raw.decode() if isinstance(raw, bytes) else raw
                vocab.add(attr, value, start + i + 1)
