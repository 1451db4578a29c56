"""Dictionary encoding of strings (categories, tags) to integer codes, per attribute.

Codes start at 1 and never change once assigned (Redis holds the master copy; see
`segserver.storage.dictionary`), so a process may cache them forever. The kernel
only ever sees codes; rules on strings (eq, in, starts_with, ...) are resolved to
sets of codes when compiled, and recompiled when new values appear
(`Vocabulary.generation` counts additions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Values past a site's dictionary cap that one process remembers as "other" per
#: attribute; further ones are asked for again (one round trip, never stored).
MAX_ALIASES = 10_000


class AttributeVocabulary:
    """value ↔ code for one attribute. Values past the site's cap share the code of
    "(other)" (storage.dictionary): they map to it, it keeps its name."""

    __slots__ = ("aliases", "codes", "values")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: list[str] = []  # code - 1 → value
        self.codes: dict[str, int] = {}
        self.aliases = 0
        for value in values:
            self.add(value, len(self.values) + 1)

    def add(self, value: str, code: int) -> None:
        """Record an assignment made by the master copy (codes arrive in order)."""
        if value in self.codes:
            return
        if code <= len(self.values) and self.values[code - 1] not in ("", value):
            if self.aliases < MAX_ALIASES:  # a value past the cap: the "(other)" code
                self.codes[value] = code
                self.aliases += 1
            return
        while len(self.values) < code - 1:  # a gap: another process' value not seen yet
            self.values.append("")
        if len(self.values) == code - 1:
            self.values.append(value)
        else:
            self.values[code - 1] = value
        self.codes[value] = code

    def code(self, value: str) -> int | None:
        return self.codes.get(value)

    def value(self, code: int) -> str | None:
        if 1 <= code <= len(self.values):
            return self.values[code - 1] or None
        return None

    def __len__(self) -> int:
        return len(self.codes)

    def known_prefix(self) -> int:
        """How many codes from 1 on are known without a gap (where a refresh starts)."""
        try:
            return self.values.index("")
        except ValueError:
            return len(self.values)


class Vocabulary:
    """The dictionaries of one site, by attribute name."""

    def __init__(self, data: Mapping[str, Iterable[str]] | None = None) -> None:
        self.attributes: dict[str, AttributeVocabulary] = {}
        self.generation = 0
        for name, values in (data or {}).items():
            self.attributes[name] = AttributeVocabulary(values)

    def of(self, attr: str) -> AttributeVocabulary:
        vocab = self.attributes.get(attr)
        if vocab is None:
            vocab = self.attributes[attr] = AttributeVocabulary()
        return vocab

    def add(self, attr: str, value: str, code: int) -> None:
        vocab = self.of(attr)
        if value not in vocab.codes:
            vocab.add(value, code)
            self.generation += 1
