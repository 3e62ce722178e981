"""Percentiles, summaries, ratio tables and the report type for benchmarks; pure (no Django, no Celery)."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class Summary:
    """Latency of one series in milliseconds: what the tables print and the JSON keeps."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    def as_dict(self, digits: int = 4) -> dict[str, float | int]:
        """Rounded to 0.1 microsecond by default: finer digits are clock noise, not information."""
        values = {"p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "mean_ms": self.mean_ms, "max_ms": self.max_ms}
        return {"n": self.n, **{k: round(v, digits) for k, v in values.items()}}


def summarize_ns(samples_ns: Sequence[int]) -> Summary:
    """Summarize `perf_counter_ns` durations; nanoseconds in, so no float rounding at capture time."""
    ms = [s / 1e6 for s in samples_ns]
    return Summary(
        n=len(ms), p50_ms=percentile(ms, 50), p99_ms=percentile(ms, 99), mean_ms=statistics.fmean(ms), max_ms=max(ms)
    )


def ratio(value: float, floor: float) -> float | None:
    """How many times the floor a measurement is; a zero floor (clock too coarse) has no ratio."""
    if floor <= 0:
        return None
    return value / floor


@dataclass
class Report:
    """What a benchmark's `run()` hands the runner: a table to print and data for results/<name>.json.

    `machine` carries what the reader needs to compare two runs (library versions,
    broker kind); the runner adds what every benchmark shares (cpu count, python).
    """

    title: str
    headers: list[str]
    rows: list[list[object]]
    data: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def bench_repeats(default: int = 5) -> int:
    """BENCH_REPEATS from the environment (a whole number >= 1), or `default`."""
    raw = os.environ.get("BENCH_REPEATS", "").strip()
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise SystemExit(f"configuration error: BENCH_REPEATS must be an integer >= 1, got {raw!r}")
    return int(raw) if raw else default


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """(the fastest of `repeats` timed calls, every time), in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times
