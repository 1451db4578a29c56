"""Percentiles, objectives and the report (Markdown, JSON, two PNG plots)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}
_OBJECTIVE = re.compile(
    r"^\s*(p50|p95|p99|p99\.9)\s*(<=|<)\s*([\d.]+)\s*(ms|s|us)\s*(?:@\s*([\d.]+)\s*rps)?\s*$"
)
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "us": 0.001}


@dataclass(frozen=True)
class Objective:
    """`p99<=10ms@2000rps`: the quantile's latency at (at least) that request rate."""

    text: str
    quantile: str
    strict: bool
    limit_ms: float
    rate: float | None

    def holds(self, latency_ms: float) -> bool:
        return latency_ms < self.limit_ms if self.strict else latency_ms <= self.limit_ms


def parse_objective(text: str) -> Objective:
    m = _OBJECTIVE.match(text)
    if m is None:
        raise ValueError(
            f"--objective {text!r}: expected e.g. 'p99<=10ms' or 'p99<=10ms@2000rps' "
            "(quantiles p50, p95, p99, p99.9; units us, ms, s)"
        )
    q, op, value, unit, rate = m.groups()
    return Objective(
        text.strip(), q, op == "<", float(value) * _UNIT_MS[unit], float(rate) if rate else None
    )


@dataclass
class Samples:
    """Every request locust made: wall time (s), name, latency (ms), ok."""

    t: npt.NDArray[np.float64]
    name: list[str]
    ms: npt.NDArray[np.float64]
    ok: npt.NDArray[np.bool_]

    @classmethod
    def read(cls, path: Path) -> Samples:
        t: list[float] = []
        names: list[str] = []
        ms: list[float] = []
        ok: list[bool] = []
        if path.exists():
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    t.append(float(row["t"]))
                    names.append(row["name"])
                    ms.append(float(row["ms"]))
                    ok.append(row["ok"] == "1")
        return cls(np.array(t), names, np.array(ms), np.array(ok, dtype=bool))

    def where(self, prefix: str) -> Samples:
        keep = np.array([n.startswith(prefix) for n in self.name], dtype=bool)
        return Samples(
            self.t[keep],
            [n for n, k in zip(self.name, keep, strict=True) if k],
            self.ms[keep],
            self.ok[keep],
        )

    def summary(self) -> dict[str, Any]:
        n = len(self.ms)
        span = float(self.t.max() - self.t.min()) if n > 1 else 0.0
        out: dict[str, Any] = {
            "requests": n,
            "errors": int((~self.ok).sum()),
            "rps": n / span if span else 0.0,
        }
        for label, q in QUANTILES.items():
            out[f"{label}_ms"] = float(np.percentile(self.ms, q)) if n else None
        return out


def percentiles_over_time(s: Samples, step: float = 1.0) -> dict[str, list[float]]:
    """Per `step` seconds since the first request: p50, p95, p99 (ms) and requests/s."""
    if not len(s.t):
        return {"t": [], "p50": [], "p95": [], "p99": [], "rps": []}
    rel = s.t - s.t.min()
    slot = (rel // step).astype(int)
    out: dict[str, list[float]] = {"t": [], "p50": [], "p95": [], "p99": [], "rps": []}
    for i in np.unique(slot):
        ms = s.ms[slot == i]
        out["t"].append(float(i * step))
        for label in ("p50", "p95", "p99"):
            out[label].append(float(np.percentile(ms, QUANTILES[label])))
        out["rps"].append(len(ms) / step)
    return out


def write_plots(out: Path, s: Samples, wrk: list[dict[str, Any]]) -> list[str]:
    """latency-over-time.png and latency-distribution.png; [] without matplotlib."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return []
    series = percentiles_over_time(s)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label in ("p50", "p95", "p99"):
        ax.plot(series["t"], series[label], label=f"{label} (locust, client side)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency of POST /v1/context (ms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    rate = ax.twinx()
    rate.plot(series["t"], series["rps"], color="grey", alpha=0.4, label="requests/s")
    rate.set_ylabel("requests/s")
    ax.legend(loc="upper left")
    ax.set_title("Latency over time")
    fig.tight_layout()
    fig.savefig(out / "latency-over-time.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    if len(s.ms):
        ms = np.sort(s.ms)
        ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms) * 100, label="locust /v1/context")
    for run in wrk:
        qs = [(run.get(f"{k}_ms"), q) for k, q in QUANTILES.items()]
        xs = [x for x, _ in qs if x is not None]
        ys = [q for x, q in qs if x is not None]
        ax.plot(
            xs,
            ys,
            marker="o",
            linestyle="--",
            label=f"wrk {run['target']}, {run['workers']} worker(s)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("percent of requests at or below")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Latency distribution")
    fig.tight_layout()
    fig.savefig(out / "latency-distribution.png", dpi=110)
    plt.close(fig)
    return ["latency-over-time.png", "latency-distribution.png"]


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}"


def write_report(out: Path, data: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    run, lo = data["run"], data.get("locust")
    lines = [
        f"# segserver load test — {run['started']}",
        "",
        f"Command: `{run['command']}`",
        "",
        f"Machine: {run['machine']}; load average (1, 5, 15 min) "
        f"{_load(run, 'start')} at the start, {_load(run, 'end')} at the end "
        "(other work on the machine shows here).",
        "",
        f"Population: {data['seed']['visitors']:,} seeded visitors "
        f"({data['seed']['seconds']:.1f} s to seed, {data['seed']['how']}), "
        f"Zipf s={run['zipf']}.",
        "",
    ]
    if lo:
        lines += [
            f"## Locust: {lo['users']} users, {lo['seconds']} s, think-time scale "
            f"{lo['think']}, {lo['workers']} server worker(s)",
            "",
            "| requests | req/s | errors | p50 ms | p95 ms | p99 ms | p99.9 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, s in [("all /v1/context", lo["context"]), *lo["by_name"].items()]:
            lines.append(
                f"| {name}: {s['requests']:,} | {s['rps']:.1f} | {s['errors']} | "
                f"{_ms(s['p50_ms'])} | {_ms(s['p95_ms'])} | {_ms(s['p99_ms'])} | "
                f"{_ms(s['p99.9_ms'])} |"
            )
        lines += [
            "",
            f"Redis CPU during the locust run: {_cpu(lo['redis_cpu'])}.",
            "Latencies are client side (locust, Python): they include the client's "
            "own scheduling on this shared machine.",
            "",
        ]
    if data.get("capacity"):
        lines += [
            "## Raw capacity (wrk)",
            "",
            "| workers | target | req/s | of ceiling | p50 ms | p99 ms | p99.9 ms | errors "
            "| Redis CPU |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in data["capacity"]:
            ratio = f"{c['of_ceiling']:.0%}" if c.get("of_ceiling") is not None else "–"
            lines.append(
                f"| {c['workers']} | {c['target']} | {c['rps']:,.0f} | {ratio} | "
                f"{_ms(c['p50_ms'])} | {_ms(c['p99_ms'])} | {_ms(c['p99.9_ms'])} | "
                f"{c['errors']} | {_cpu(c['redis_cpu'])} |"
            )
        lines += ["", f"wrk: {data['wrk']}", ""]
    if data.get("paced"):
        lines += [
            "## Paced runs (open loop, server-side latency from /metrics)",
            "",
            "| rate req/s | answered req/s | sent | p50 ms | p95 ms | p99 ms | Redis CPU |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in data["paced"]:
            lines.append(
                f"| {p['rate']:,.0f} | {p['achieved_rps']:,.0f} | {p['sent']:,} | "
                f"{_ms(p['p50_ms'])} | "
                f"{_ms(p['p95_ms'])} | {_ms(p['p99_ms'])} | {_cpu(p['redis_cpu'])} |"
            )
        lines.append("")
    if data.get("objectives"):
        lines += ["## Objectives", ""]
        for o in data["objectives"]:
            verdict = "met" if o["passed"] else "NOT met"
            lines.append(
                f"- `{o['objective']}`: {verdict} (measured {_ms(o['measured_ms'])} ms "
                f"{o['where']})"
            )
        lines.append("")
    if data.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in data["plots"]] + [""]
    else:
        lines += ["Plots: not drawn (matplotlib is not installed).", ""]
    (out / "report.md").write_text("\n".join(lines))


def _cpu(c: dict[str, float] | None) -> str:
    if not c:
        return "–"
    return f"{c['seconds']:.1f} s ({c['percent_of_core']:.0f}% of a core)"


def _load(run: dict[str, Any], when: str) -> str:
    avg = run.get(f"load_average_at_{when}")
    return "/".join(f"{x:.1f}" for x in avg) if avg else "–"
