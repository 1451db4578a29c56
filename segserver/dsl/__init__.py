"""The rule language: JSON rules → validated trees (`validate`), the text form (`text`),
the tree (`nodes`) and the prebuilt segments (`prebuilt`). See docs/rules.md."""

from segserver.dsl.text import from_text, to_text
from segserver.dsl.validate import parse_rule

__all__ = ["from_text", "parse_rule", "to_text"]
