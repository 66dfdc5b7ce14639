"""Small statistics and result types shared by the measurement groups."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def latency_stats(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p99 / mean in microseconds of one run's per-call latencies."""
    us = [s / 1000 for s in samples_ns]
    return {
        "p50_us": percentile(us, 50),
        "p99_us": percentile(us, 99),
        "mean_us": sum(us) / len(us),
        "calls": float(len(us)),
    }


def time_calls(call: Callable[[int], Any], n: int) -> list[int]:
    """Per-call wall time (ns) of `call(i)` for i in range(n)."""
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        start = clock()
        call(i)
        samples[i] = clock() - start
    return samples


def medians(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over runs of that run's figure."""
    keys = runs[0].keys() if runs else []
    return {key: median([run[key] for run in runs]) for key in keys}


@dataclass
class Result:
    """One row of the table."""

    id: str
    what: str
    measured: str = ""
    target: str = ""
    passed: bool | None = None  # None: skipped or informational
    figures: dict[str, float] = field(default_factory=dict)  # medians over runs
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # raw per-run figures
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return "SKIP"
        if self.passed is None:
            return "info"
        return "PASS" if self.passed else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "what": self.what,
            "measured": self.measured,
            "target": self.target,
            "result": self.verdict,
            "skipped": self.skipped,
            "figures": self.figures,
            "runs": self.runs,
            "notes": self.notes,
        }


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} us"
