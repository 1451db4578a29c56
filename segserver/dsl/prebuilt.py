"""The prebuilt segments installed for every new site (`config/segments/*.json`).

One file per segment: `{"id", "name", "description", "priority", "tags", "rule"}`.
They are ordinary segments once installed (editable, deletable); thresholds such as
the high-value spend live in the rule, so editing the segment is the configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segserver.dsl.validate import parse_rule
from segserver.errors import ConfigError, RuleError
from segserver.profile.schema import Layout, Schema
from segserver.resources import shipped_dir

_FIELDS = ("id", "name", "description", "priority", "tags", "rule")


@dataclass(frozen=True)
class PrebuiltSegment:
    id: str
    name: str
    description: str
    priority: int
    tags: tuple[str, ...]
    rule: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "priority": self.priority,
            "tags": list(self.tags),
            "rule": self.rule,
        }


def segments_dir() -> Path:
    return shipped_dir("config") / "segments"


def load_prebuilt(
    directory: Path | None = None, layout: Layout | None = None
) -> list[PrebuiltSegment]:
    """Every prebuilt segment, by id; each rule validated against `layout` (built-ins)."""
    directory = directory or segments_dir()
    layout = layout or Schema().layout
    found: list[PrebuiltSegment] = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path.name}: cannot read a prebuilt segment: {exc}") from exc
        found.append(_segment(data, path.name))
    ids = {s.id for s in found}
    for seg in found:
        try:
            parse_rule(seg.rule, layout, ids)
        except RuleError as exc:
            raise ConfigError(f"{seg.id}.json: {exc.message}") from None
    return found


def _segment(data: Any, name: str) -> PrebuiltSegment:
    if not isinstance(data, dict) or sorted(data) != sorted(_FIELDS):
        raise ConfigError(f"{name}: a prebuilt segment has exactly the fields {', '.join(_FIELDS)}")
    if f"{data['id']}.json" != name:
        raise ConfigError(f"{name}: the file is named after its id ({data['id']!r})")
    if not isinstance(data["priority"], int) or not isinstance(data["tags"], list):
        raise ConfigError(f"{name}: priority is an integer and tags a list")
    return PrebuiltSegment(
        data["id"],
        str(data["name"]),
        str(data["description"]),
        data["priority"],
        tuple(str(t) for t in data["tags"]),
        data["rule"],
    )
