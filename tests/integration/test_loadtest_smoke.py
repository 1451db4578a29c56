"""A 10-second run of the load-test runner: it finishes and writes its report.

No latency assertion: latency belongs in the report (STYLE.md, tests). The runner
starts its own private Redis and server; locust runs as its subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from loadtests.run import main

pytestmark = pytest.mark.slow


def test_runner_writes_the_report(tmp_path: Path) -> None:
    has_wrk = shutil.which("wrk") is not None and shutil.which("taskset") is not None
    code = main([
        "--visitors", "300", "--users", "5", "--seconds", "10", "--think", "0.2",
        "--wrk-seconds", "1" if has_wrk else "0", "--workers", "1", "--connections", "4",
        "--paced-seconds", "2", "--objective", "p99<=1s", "--objective", "p99<=1s@20rps",
        "--out", str(tmp_path),
    ])  # fmt: skip
    assert code in (0, 1)  # 1 = an objective failed: a verdict, not a crash
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["locust"]["context"]["requests"] > 0
    assert [o["objective"] for o in report["objectives"]] == ["p99<=1s", "p99<=1s@20rps"]
    assert [p["rate"] for p in report["paced"]] == [20.0]
    if has_wrk:
        assert [c["target"] for c in report["capacity"]] == ["ceiling", "context"]
    assert (tmp_path / "report.md").read_text().startswith("# segserver load test")
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latency-over-time.png").stat().st_size > 0
        assert (tmp_path / "latency-distribution.png").stat().st_size > 0
