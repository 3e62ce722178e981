"""`make bench`: run every benchmark, print its table, write benchmarks/results/<name>.json.

A benchmark is a module of this package with a `run() -> Report` function;
modules whose names start with `_` are its helpers, and `stats` has no `run`.
Benchmark modules import Django and Celery only inside `run()`, so finding
them here is cheap and sets nothing up.

Each benchmark runs in a fresh interpreter: a benchmark chooses the
environment (Redis, result backend, database) before Django reads it, which
happens once per process, and one benchmark that fails or leaves state
behind must not change the next one's numbers.

    python -m benchmarks                  # every benchmark, each in its own process
    python -m benchmarks queue_roundtrip  # only the ones named
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchmarks
from benchmarks.stats import Report, format_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
IN_PROCESS = "--in-process"


def discover() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        if callable(getattr(module, "run", None)):
            names.append(info.name)
    return sorted(names)


def machine_info() -> dict[str, Any]:
    """What every benchmark's numbers depend on; a benchmark adds its own (library versions, broker)."""
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "arch": platform.machine(),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def run_here(name: str) -> None:
    """Run one benchmark in this process, print its table and write its results file."""
    module = importlib.import_module(f"benchmarks.{name}")
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    report: Report = module.run()
    duration = time.perf_counter() - started
    payload = {
        "benchmark": name,
        "title": report.title,
        "timestamp": started_at.isoformat(timespec="seconds"),
        "duration_s": round(duration, 1),
        "machine": {**machine_info(), **report.machine},
        **report.data,
    }
    path = RESULTS_DIR / f"{name}.json"
    write_json(path, payload)
    print(f"\n{report.title}\n")
    print(format_table(report.headers, report.rows))
    if report.notes:
        print("\n" + "\n".join(f"note: {note}" for note in report.notes))
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"\n{duration:.1f}s; wrote {shown}")


def run_isolated(name: str) -> int:
    """`python -m benchmarks --in-process <name>` as a child; its exit status."""
    child = subprocess.Popen([sys.executable, "-m", "benchmarks", IN_PROCESS, name])
    try:
        return child.wait()
    except KeyboardInterrupt:
        # The child got the same Ctrl-C; let it stop the workers it started.
        return child.wait()


def main(argv: list[str]) -> int:
    if argv[:1] == [IN_PROCESS]:
        for name in argv[1:]:
            run_here(name)
        return 0
    available = discover()
    unknown = [n for n in argv if n not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    failed = [name for name in (argv or available) if run_isolated(name) != 0]
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
