"""Generated batch code and the kernel cache: same bits as every other evaluator, never
compiled twice for one content hash, no user text in the source, and a fresh data dir,
checkout or cache directory ready without compiling.

Generated kernels compile in a worker process (seconds each), so the corpus runs as one
program; hypothesis-generated programs are in test_engine_property.py.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from segserver import engine
from segserver.bench.features import build_features
from segserver.dsl.validate import instant
from segserver.engine import (
    SegmentDef,
    build_program,
    codegen,
    evaluate,
    evaluate_batch,
    generated,
    jitcache,
    members,
)
from segserver.engine import reference as twin
from segserver.profile.schema import Schema
from segserver.profile.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests/cases/rules/semantics.json").read_text())
LAYOUT = Schema().layout
NOW = instant("2026-11-22T12:00:00Z", "now")
TIMEOUT = 600  # seconds for one compile on a busy 2-core machine


def _unique_program(extra: int = 0) -> engine.Program:
    """A program no earlier run compiled: a constant nobody else uses."""
    marker = float(uuid.uuid4().int % 10**9) + 0.5 + extra
    return build_program(
        [
            SegmentDef("big", {"attr": "total_spent", "op": "gte", "value": marker}),
            SegmentDef("recent", {"attr": "last_seen", "op": "within", "value": "7d"}),
        ],
        LAYOUT,
        Vocabulary(),
    )


def _forget(digest: str) -> None:
    """Remove a test program's generated files from the shared cache."""
    for path in jitcache.generated_dir().glob(f"g{digest}*"):
        path.unlink()


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    engine.warm()


def test_generated_code_agrees_on_the_semantics_corpus() -> None:
    vocab = Vocabulary()
    rows = []  # (case, features, now, expected match)
    for i, case in enumerate(CASES["cases"]):
        now = instant(case["now"], "now")
        for profile, want in [(p, True) for p in case["match"]] + [
            (p, False)
            for p in [*case["no_match"], *([case["missing"]] if "missing" in case else [])]
        ]:
            rows.append((i, build_features(LAYOUT, vocab, profile, now), now, want))
    segments = [SegmentDef(f"case{i}", c["rule"]) for i, c in enumerate(CASES["cases"])]
    segments += [SegmentDef(sid, r) for sid, r in CASES["segments"].items()]
    program = build_program(segments, LAYOUT, vocab)
    assert engine.generate(program).result(TIMEOUT)
    assert engine.is_generated(program)
    for i, features, now, want in rows:
        block = np.ascontiguousarray(np.tile(features, (3, 1)))
        got = np.zeros((3, program.words), np.uint64)
        evaluate_batch(program, block, now, got)  # the generated kernel
        single = np.zeros(program.words, np.uint64)
        evaluate(program, features, now, single)
        reference = np.zeros(program.words, np.uint64)
        twin.evaluate(program, features, now, reference)
        assert (got == reference).all() and (single == reference).all(), CASES["cases"][i]["op"]
        assert (f"case{i}" in members(program, got[0])) == want, CASES["cases"][i]["op"]


def test_a_program_is_compiled_once_per_content_hash() -> None:
    program = _unique_program()
    digest = generated.digest_of(program)
    first, second = generated.Registry(), generated.Registry()  # as two processes would
    try:
        futures = [first.request(program), second.request(program)]
        assert all(f.result(TIMEOUT) for f in futures)
        assert first.request(program) is futures[0]
        other = _unique_program()  # another constant: another program, another hash
        assert generated.digest_of(other) != digest
        again = build_program(
            [SegmentDef(s, r) for s, r in zip(program.segment_ids, program.rules, strict=True)],
            LAYOUT,
            Vocabulary(),
        )  # the same content built again: the same hash
        assert generated.digest_of(again) == digest
        assert first.request(again) is futures[0]
        # the worker compiled it once; the other registry found it in the cache (file lock)
        assert len(first.compiled) + len(second.compiled) == 1
        third = generated.Registry()  # a later process: loads it, compiles nothing
        loaded = third.request(program)
        assert loaded.done() and loaded.result()
        assert third.compiled == [] and third.loaded == [digest]
        assert third.kernel(program) is not None
    finally:
        for registry in (first, second):
            registry.shutdown()
        _forget(digest)


def test_abandon_kills_a_compile_under_way_and_the_interpreter_serves() -> None:
    """A stopping server does not wait for a compile (seconds to minutes): abandon()
    ends the worker at once and the request resolves False."""
    program = _unique_program()
    registry = generated.Registry()
    try:
        future = registry.request(program)
        assert not future.done()  # compiling in the worker (seconds)
        registry.abandon()
        assert future.result(30) is False  # long before a compile could have ended
        assert registry.kernel(program) is None and registry.compiled == []
    finally:
        _forget(generated.digest_of(program))


def test_evaluate_batch_uses_generated_code_once_loaded_and_never_compiles() -> None:
    program = _unique_program(1)
    block = np.ascontiguousarray(
        np.stack([build_features(LAYOUT, Vocabulary(), {"total_spent": v}, NOW) for v in
                  (0, 1e10, float(program.consts[0]), float(program.consts[0]) - 1)])
    )  # fmt: skip
    before = engine.compile_stats()["compiled"]
    interpreted = np.zeros((4, 1), np.uint64)
    evaluate_batch(program, block, NOW, interpreted)
    assert not engine.is_generated(program)
    try:
        assert engine.generate(program).result(TIMEOUT)
        assert engine.is_generated(program)
        for writable in (True, False):
            rows = block.copy()
            rows.flags.writeable = writable
            out = np.full((4, 2), 7, np.uint64)  # a wider out: extra words are zeroed
            evaluate_batch(program, rows, NOW, out)
            assert (out[:, :1] == interpreted).all() and not out[:, 1].any()
        assert [int(x) for x in interpreted[:, 0]] == [0, 1, 1, 0]
        assert engine.compile_stats()["compiled"] == before  # nothing compiled here
    finally:
        _forget(generated.digest_of(program))


def test_generated_source_holds_no_user_text() -> None:
    hostile = "x'); __import__('os').system('echo pwned'); ('"
    vocab = Vocabulary({"country": [hostile, "DE"], "tags": [hostile]})
    program = build_program(
        [
            SegmentDef(hostile[:40].replace("'", "q").replace(" ", "_"),
                       {"attr": "country", "op": "in", "value": [hostile, "DE"]}),
            SegmentDef("t", {"attr": "tags", "op": "has_any", "value": [hostile]}),
            SegmentDef("c", {"attr": "country", "op": "contains", "value": "pwned"}),
        ],
        LAYOUT,
        vocab,
    )  # fmt: skip
    text = codegen.source(program.code, program.consts, program.words)
    assert "pwned" not in text and "os" not in text.split()
    tree = ast.parse(text)
    docstring = tree.body[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node is not getattr(docstring, "value", None):
            assert isinstance(node.value, int | float | bool), node.value


def _cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "segserver.cli", *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          check=True, timeout=TIMEOUT)  # fmt: skip
    return proc.stdout


def test_a_fresh_data_dir_is_ready_without_compiling(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    out = _cli({"SEGSERVER_DATA_DIR": str(data_dir), "SEGSERVER_CACHE_DIR": ""}, "warm")
    assert f"{len(engine.SIGNATURES)} loaded, 0 compiled" in out, out
    assert not data_dir.exists()  # nothing per data dir any more


def test_another_cache_dir_starts_from_the_shared_one(tmp_path: Path) -> None:
    out = _cli({"SEGSERVER_CACHE_DIR": str(tmp_path / "own")}, "warm")
    assert f"{len(engine.SIGNATURES)} loaded, 0 compiled" in out, out
    assert (tmp_path / "own" / f"kernels-{jitcache.KERNEL_KEY}").is_dir()


def test_another_checkout_of_the_same_sources_shares_the_compiled_kernels(tmp_path: Path) -> None:
    # A fresh clone elsewhere: other paths, other mtimes, the same bytes.
    shutil.copytree(ROOT / "segserver", tmp_path / "segserver",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "lua", tmp_path / "lua")
    probe = (
        "import segserver; from segserver import engine; from segserver.engine import jitcache; "
        "engine.warm(); s = engine.compile_stats(); "
        "print(segserver.__file__, jitcache.KERNEL_KEY, s['compiled'], s['loaded'])"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    out = proc.stdout.split()
    assert out[0].startswith(str(tmp_path))
    assert out[1] == jitcache.KERNEL_KEY
    assert (int(out[2]), int(out[3])) == (0, len(engine.SIGNATURES))


def test_kernel_key_covers_every_source_the_kernels_are_built_from() -> None:
    package = ROOT / "segserver"
    for rel in jitcache.KERNEL_SOURCES:
        assert (package / rel).is_file(), rel
    # every engine module that defines Numba kernels is in the key
    numba_modules = {
        f"engine/{p.name}"
        for p in (package / "engine").glob("*.py")
        if "@_jit" in p.read_text() or "numba.njit(" in p.read_text()
    }
    assert numba_modules <= set(jitcache.KERNEL_SOURCES)
