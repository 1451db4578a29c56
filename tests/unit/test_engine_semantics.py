"""The semantics table: every operator on matching, non-matching and missing values.

The cases live in tests/cases/rules/semantics.json (shared with other implementations)
and run against the pure-Python twin and the Numba kernels (single: short-circuit and
wide; batch: one and all cores). Generated code runs them in test_engine_generated.py. The
table in docs/rules.md is generated from the same cases; this test fails when it is
out of date (regenerate: `.venv/bin/python tests/unit/test_engine_semantics.py`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segserver.bench.features import build_features
from segserver.dsl.text import to_text
from segserver.dsl.validate import instant
from segserver.engine import SegmentDef, build_program, evaluate, evaluate_batch, members
from segserver.engine import reference as twin
from segserver.engine.wide import build_tables
from segserver.profile.schema import Schema
from segserver.profile.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests/cases/rules/semantics.json").read_text())
DOC = ROOT / "docs/rules.md"
START, END = "<!-- semantics:start -->", "<!-- semantics:end -->"
LAYOUT = Schema().layout


def run(impl: str, rule: dict[str, Any], profile: dict[str, Any], now_iso: str) -> bool:
    vocab = Vocabulary()
    now = instant(now_iso, "now")
    features = build_features(LAYOUT, vocab, profile, now)
    segments = [SegmentDef("case", rule)] + [
        SegmentDef(sid, r) for sid, r in CASES["segments"].items()
    ]
    program = build_program(segments, LAYOUT, vocab)
    out = np.zeros(program.words, np.uint64)
    if impl == "py":
        twin.evaluate(program, features, now, out)
    elif impl == "numba":
        evaluate(program, features, now, out)
    elif impl == "wide":  # the branch-free kernel of large programs, forced on this one
        tables = build_tables(program.code, program.consts, min_rows=0)
        assert tables is not None
        evaluate(dataclasses.replace(program, wide=tables), features, now, out)
    else:
        block = np.ascontiguousarray(np.tile(features, (3, 1)))
        outs = np.zeros((3, program.words), np.uint64)
        evaluate_batch(program, block, now, outs, parallel=impl == "parallel")
        assert (outs == outs[0]).all()
        out = outs[0]
    return "case" in members(program, out)


def _ids() -> list[str]:
    return [c["op"] for c in CASES["cases"]]


@pytest.mark.parametrize("impl", ["py", "numba", "wide", "batch", "parallel"])
@pytest.mark.parametrize("case", CASES["cases"], ids=_ids())
def test_operator(case: dict[str, Any], impl: str) -> None:
    for profile in case["match"]:
        assert run(impl, case["rule"], profile, case["now"]), profile
    for profile in case["no_match"]:
        assert not run(impl, case["rule"], profile, case["now"]), profile
    if "missing" in case:
        assert not run(impl, case["rule"], case["missing"], case["now"])


def _profile(p: dict[str, Any]) -> str:
    if not p:
        return "(empty)"
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in p.items())


def semantics_table() -> str:
    lines = [
        f"All rows evaluated at `now` = {CASES['now']} unless the rule says otherwise.",
        "",
        "| operator | meaning | example | matches | does not match | attribute missing |",
        "|---|---|---|---|---|---|",
    ]
    for c in CASES["cases"]:
        example = to_text(c["rule"]).replace("|", "\\|")
        if c["now"] != CASES["now"]:
            example += f" (now = {c['now']})"
        missing = "no match" if "missing" in c else "—"
        cells = [
            f"`{c['op']}`",
            c["meaning"],
            f"`{example}`",
            "<br>".join(_profile(p) for p in c["match"]) or "—",
            "<br>".join(_profile(p) for p in c["no_match"]) or "—",
            missing,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_docs_table_is_generated_from_these_cases() -> None:
    text = DOC.read_text()
    current = text[text.index(START) + len(START) : text.index(END)].strip()
    assert current == semantics_table(), (
        "docs/rules.md is out of date: run .venv/bin/python tests/unit/test_engine_semantics.py"
    )


if __name__ == "__main__":
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{semantics_table()}\n{END}{tail}")
    sys.exit(0)
