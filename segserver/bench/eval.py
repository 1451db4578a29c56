"""`segserver bench eval`: the rule engine against its baselines, in one run.

For each rule set (the 13 prebuilt segments, a realistic 20-segment set, 100 and
1 000 generated segments) it first checks that every implementation gives the same
bits on the same profiles (the pure-Python twin, the single-profile kernel, the batch
interpreter, code generated for the set, NumPy), then times: one profile (from a
feature vector and from stored bytes), the batch kernels in ns per profile·segment on
a block that fits the caches (a bulk chunk just decoded) and on a large block read
from memory, `next_change` per profile and batched, and how long the generated code
takes to compile (in the worker process, from scratch) and to load. It also times a
cold start: a fresh process loading the kernels from the shared cache, and
`segserver serve` on a fresh data dir until /readyz. The summary compares each row of
issue 11 with its baseline from this run. `main(argv) -> int` is the CLI entry point.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segserver.bench.eval_growthbook import growthbook_attributes, to_growthbook
from segserver.bench.eval_sets import (
    F64,
    NOW,
    REALISTIC,
    generated_segments,
    make_vocab,
    random_profiles,
)
from segserver.bench.eval_timing import (
    FreshGeneratedCache,
    cpu_per_call,
    cycle,
    kernels_ready,
    serve_ready,
)
from segserver.bench.numpy_eval import evaluate_numpy
from segserver.dsl.prebuilt import load_prebuilt
from segserver.engine import (
    Program,
    SegmentDef,
    build_program,
    evaluate,
    evaluate_batch,
    generate,
    generated,
    next_change,
    next_change_batch,
    warm,
)
from segserver.engine import reference as twin
from segserver.profile.schema import Layout, Schema
from segserver.profile.vocabulary import Vocabulary

U64 = np.uint64


class Mismatch(Exception):
    pass


@dataclass
class Result:
    """The numbers of one rule set (ns per profile·segment unless said otherwise)."""

    name: str
    segments: int
    single_us: float = 0.0
    interp_cache: float = 0.0
    gen_cache: float = 0.0
    numpy_cache: float = 0.0
    interp_memory: float = 0.0
    gen_memory: float = 0.0
    compile_s: float = 0.0
    load_ms: float = 0.0
    lines: list[str] = field(default_factory=list)


def _check(name: str, got: Any, want: Any, what: str) -> None:
    if not np.array_equal(got, want):
        raise Mismatch(f"{name}: {what} disagrees with the single-profile kernel")


def _agree(name: str, program: Program, sample: F64) -> None:
    """Every implementation's bits (and next_change) equal the single-profile kernel's."""
    expected = np.zeros((len(sample), program.words), U64)
    changes = np.zeros(len(sample))
    for i, f in enumerate(sample):
        evaluate(program, f, NOW, expected[i])
        got = np.zeros(program.words, U64)
        twin.evaluate(program, f, NOW, got)
        _check(name, got, expected[i], "the pure-Python twin")
        changes[i] = next_change(program, f, NOW)
        if changes[i] != twin.next_change(program, f, NOW):
            raise Mismatch(f"{name}: next_change disagrees with the twin on profile {i}")
    batch_changes = np.zeros(len(sample))
    next_change_batch(program, sample, NOW, batch_changes)
    _check(name, batch_changes, changes, "next_change_batch")
    for parallel in (False, True):
        out = np.zeros((len(sample), program.words), U64)
        evaluate_batch(program, sample, NOW, out, parallel=parallel)
        _check(name, out, expected, "the batch kernel")
    _check(name, evaluate_numpy(program, sample, NOW), expected, "NumPy")


def bench_set(
    name: str,
    segments: list[SegmentDef],
    layout: Layout,
    vocab: Vocabulary,
    profiles: F64,
    chunk: int,
    budget: float,
    gb: Any,
) -> Result:
    res = Result(name, len(segments))
    out = res.lines.append
    t = time.perf_counter()
    program = build_program(segments, layout, vocab)
    build_ms = (time.perf_counter() - t) * 1e3
    s = len(segments)
    out(f"{name}: {s} segments, {program.code.shape[0]} rows, program built in "
        f"{build_ms:.2f} ms (no JIT)")  # fmt: skip
    sample = np.ascontiguousarray(profiles[:300])
    _agree(name, program, sample)  # interpreter first: the generated code is not ready

    future = generate(program)
    started = time.perf_counter()
    out1 = np.zeros(program.words, U64)
    rows = cycle(list(sample))
    res.single_us = cpu_per_call(lambda: evaluate(program, rows(), NOW, out1), budget) * 1e6
    blobs = cycle([r.tobytes() for r in sample])
    from_bytes = cpu_per_call(
        lambda: evaluate(program, np.frombuffer(layout.pad(blobs()), np.float64), NOW, out1), budget
    )
    few = cycle(list(sample[:20]))
    py = cpu_per_call(lambda: twin.evaluate(program, few(), NOW, out1), budget)
    out(f"  one profile, features      {res.single_us:9.2f} µs   "
        f"({res.single_us * 1e3 / s:.1f} ns per segment, incl. the call)")  # fmt: skip
    out(f"  one profile, stored bytes  {from_bytes * 1e6:9.2f} µs")
    out(f"  pure-Python twin           {py * 1e6:9.1f} µs   = {py * 1e6 / res.single_us:.0f}× "
        "the kernel")  # fmt: skip
    if gb is not None and name == "realistic-20":
        out(_growthbook(program, segments, layout, vocab, sample, gb, res.single_us, budget))

    small = np.ascontiguousarray(profiles[:chunk])
    big = profiles
    o_small = np.zeros((small.shape[0], program.words), U64)
    o_big = np.zeros((big.shape[0], program.words), U64)

    def per_ps(seconds: float, rows: int) -> float:
        return seconds * 1e9 / (rows * s)

    res.interp_cache = per_ps(
        cpu_per_call(lambda: evaluate_batch(program, small, NOW, o_small), budget), len(small)
    )
    res.interp_memory = per_ps(
        cpu_per_call(lambda: evaluate_batch(program, big, NOW, o_big), budget), len(big)
    )
    np_rows = np.ascontiguousarray(profiles[: min(len(profiles), 20_000)])
    res.numpy_cache = per_ps(
        cpu_per_call(lambda: evaluate_numpy(program, small, NOW), budget), len(small)
    )
    np_memory = per_ps(
        cpu_per_call(lambda: evaluate_numpy(program, np_rows, NOW), budget), len(np_rows)
    )
    changes = np.zeros(len(small))
    per_profile = (
        cpu_per_call(lambda: [next_change(program, f, NOW) for f in small[:500]], budget) / 500
    )
    batched = cpu_per_call(lambda: next_change_batch(program, small, NOW, changes), budget) / len(
        small
    )

    ok = future.result()  # compiling in the worker meanwhile
    waited = time.perf_counter() - started
    if not ok:
        raise Mismatch(f"{name}: the generated kernel could not be built")
    res.compile_s, load_s = generated.REGISTRY.timings(program)
    res.load_ms = load_s * 1e3
    _agree(name, program, sample)  # again, now through the generated kernel
    res.gen_cache = per_ps(
        cpu_per_call(lambda: evaluate_batch(program, small, NOW, o_small), budget), len(small)
    )
    res.gen_memory = per_ps(
        cpu_per_call(lambda: evaluate_batch(program, big, NOW, o_big), budget), len(big)
    )
    walls = []
    for _ in range(3):  # wall time (threads): the best of three
        wall = time.perf_counter()
        evaluate_batch(program, big, NOW, o_big, parallel=True)
        walls.append(time.perf_counter() - wall)
    parallel = min(walls) * 1e9 / (len(big) * s)

    out(f"  generated code: compiled in {res.compile_s:.1f} s in the worker process "
        f"(ready {waited:.1f} s after the request, while this bench ran), "
        f"loaded in {res.load_ms:.0f} ms")  # fmt: skip
    out("  batch, ns per profile·segment (×: faster than the interpreter)")
    out(f"                                  in cache ({len(small):,})   "
        f"from memory ({len(big):,})")  # fmt: skip
    out(f"    interpreter                   {res.interp_cache:8.2f}             "
        f"{res.interp_memory:8.2f}")  # fmt: skip
    out(f"    generated code                {res.gen_cache:8.2f} "
        f"({res.interp_cache / res.gen_cache:4.1f}×)     {res.gen_memory:8.2f} "
        f"({res.interp_memory / res.gen_memory:4.1f}×)")  # fmt: skip
    out(f"    NumPy columnar                {res.numpy_cache:8.2f}             "
        f"{np_memory:8.2f} ({len(np_rows):,} rows)")  # fmt: skip
    out(f"    generated, all {os.cpu_count()} cores (wall, best of 3)         {parallel:8.2f}")
    out(f"  next_change: {per_profile * 1e6:.2f} µs per profile called one by one, "
        f"{batched * 1e6:.2f} µs batched ({per_profile / batched:.1f}×)")  # fmt: skip
    return res


def _growthbook(
    program: Program, segments: list[SegmentDef], layout: Layout, vocab: Vocabulary,
    sample: F64, gb: Any, single_us: float, budget: float,
) -> str:  # fmt: skip
    expected = np.zeros((len(sample), program.words), U64)
    for i, f in enumerate(sample):
        evaluate(program, f, NOW, expected[i])
    rules = [to_growthbook(dict(seg.rule), NOW) for seg in segments]
    attrs = [
        growthbook_attributes(f, layout, vocab, [("page_views", 30), ("product_views", 7)])
        for f in sample
    ]
    for i, a in enumerate(attrs):
        got = {seg.id for seg, r in zip(segments, rules, strict=True) if gb(a, r)}
        want = {sid for j, sid in enumerate(program.segment_ids)
                if (int(expected[i, j >> 6]) >> (j & 63)) & 1}  # fmt: skip
        if got != want:
            raise Mismatch(f"GrowthBook disagrees on profile {i}: {sorted(got ^ want)}")
    nxt = cycle(attrs)
    t = cpu_per_call(lambda: [gb(a, r) for a in (nxt(),) for r in rules], budget) * 1e6
    return (f"  GrowthBook evalCondition   {t:9.1f} µs   = {t / single_us:.0f}× the kernel "
            "(attributes prepared beforehand, not timed)")  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segserver bench eval", description=__doc__)
    parser.add_argument("--profiles", type=int, default=100_000,
                        help="profiles in the large block (default 100 000)")  # fmt: skip
    parser.add_argument("--chunk", type=int, default=4096,
                        help="profiles in the in-cache block (default 4 096)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, short timings, no 1 000-segment set")  # fmt: skip
    args = parser.parse_args(argv)
    budget = 0.05 if args.quick else 0.3
    n = 8_192 if args.quick else args.profiles
    warm()
    layout = Schema().layout
    vocab = make_vocab()
    profiles = random_profiles(layout, n, np.random.default_rng(7))
    try:
        from growthbook.core import evalCondition

        gb: Any = evalCondition
    except ImportError:
        gb = None
    sets = [
        ("prebuilt", [SegmentDef(s.id, s.rule, s.priority) for s in load_prebuilt()]),
        ("realistic-20", [SegmentDef(sid, rule) for sid, rule in REALISTIC]),
        ("generated-100", generated_segments(100, 1)),
    ]
    if not args.quick:
        sets.append(("generated-1000", generated_segments(1000, 2)))
    print(f"segserver bench eval — {n:,} profiles of {layout.size} bytes, "
          "now = 2026-11-22T12:00:00Z; CPU time of the calling thread, best of 5")  # fmt: skip
    ready, compiled, loaded = kernels_ready()
    print(f"cold start: a fresh process has the kernels in {ready:.2f} s "
          f"({loaded} loaded from the shared cache, {compiled} compiled)")  # fmt: skip
    serve = serve_ready()
    print(f"cold start: `segserver serve` on a fresh data dir answers /readyz after {serve:.2f} s")
    results: list[Result] = []
    try:
        with FreshGeneratedCache():
            for name, segments in sets:
                res = bench_set(name, segments, layout, vocab, profiles, args.chunk, budget, gb)
                results.append(res)
                print("\n".join(res.lines), flush=True)
    except Mismatch as exc:
        print(f"ERROR: {exc}; no times reported for it")
        return 1
    _summary(results, serve)
    return 0


def _summary(results: list[Result], serve: float) -> None:
    by = {r.name: r for r in results}
    print("\nissue 11, engine rows (baseline: the interpreter in this run)")
    print(f"  {'what':<44} {'baseline':>12} {'now':>12} {'target':>10}")
    r20 = by["realistic-20"]
    print(f"  {'batch, 20 segments, ns/profile·segment':<44} {r20.interp_cache:>12.2f} "
          f"{r20.gen_cache:>12.2f} {'≤ 1.5':>10}")  # fmt: skip
    print(f"  {'  the same, block from memory':<44} {r20.interp_memory:>12.2f} "
          f"{r20.gen_memory:>12.2f}")  # fmt: skip
    print(f"  {'  plain NumPy columnar (in cache)':<44} {'':>12} {r20.numpy_cache:>12.2f}")
    big = by.get("generated-1000")
    if big is not None:
        print(f"  {'batch, 1 000 segments, ns/profile·segment':<44} {big.interp_cache:>12.2f} "
              f"{big.gen_cache:>12.2f}")  # fmt: skip
        print(f"  {'one profile, 1 000 segments, µs':<44} {'':>12} {big.single_us:>12.2f} "
              f"{'≤ 20':>10}")  # fmt: skip
        print(f"  {'compile of generated code, 1 000 segments, s':<44} {'':>12} "
              f"{big.compile_s:>12.1f}")  # fmt: skip
    print(f"  {'one profile, 20 segments, µs (incl. call)':<44} {'':>12} {r20.single_us:>12.2f} "
          f"{'≤ 1':>10}")  # fmt: skip
    print(f"  {'compile of generated code, 20 segments, s':<44} {'':>12} {r20.compile_s:>12.1f}")
    print(f"  {'server ready on a fresh data dir, s':<44} {'':>12} {serve:>12.2f} {'≤ 5':>10}")
