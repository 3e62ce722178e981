"""Backtest fan-out: a parameter grid in one process vs the same grid as a chord over the two `backtests` workers.

Why: a grid is the research desk's heaviest request, and the `backtests` queue exists to run it on more than one
core. The comparison is honest end to end: in-process is `run_grid` on one core over bars already in memory;
fanned out is `runs.run_submit(kind="grid")` (validation, bars from the database, chunking) -> a Celery chord of
`backtests.grid_chunk` tasks on a real `backtests` worker (prefork, concurrency 2) -> `celery.chord_unlock` on a
real `default` worker -> `backtests.grid_finish` (ranking, the best set's backtest, the stored table), timed from
the call to run_submit until this process sees the run DONE. Parallel efficiency = in-process / (2 x fanned out);
the goal is >= 80%.

Two grids over the 50 shared daily symbols (992 dates), SMA crossover with Zerodha charges:
- the issue's grid: fast 5..50 step 5 x slow 20..200 step 10 (174 pairs), a fraction of a second of work, so
  what it measures is the fan-out's fixed cost;
- a large grid: fast 2..60 step 1 x slow 10..300 step 2 (fast < slow: 7,938 sets), whose chunks take a second
  or more; and the same grid long-only and long-short (15,876 sets).

Each is measured in a fresh child process (Django reads its settings once) per variant: PostgreSQL with the
project's result backend (SQLAlchemy on the same database, as in production: `celery.chord_unlock` polls it
every CHORD_POLL_SECONDS); the embedded default (SQLite, same backend); PostgreSQL with Redis as the result
backend (chords count their parts, no polling), for comparison. PostgreSQL is DATABASE_URL's server when it is
one, else postgres://postgres@127.0.0.1:5432 (a fresh `trading_bench_fanout` database, dropped at the end).
Before timing, one run of each grid warms the workers (their numba cache load, the bars cache); each timed run
changes the cash by a rupee so that the run cache does not answer it. The three measurements run in rounds
(in-process, two processes, fanned out), so that each sees the same machine; times are the best of
BENCH_REPEATS rounds (default 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks._pg import close_django, ensure_database, execute, server_url, with_database
from benchmarks._stack import BenchStack, machine_extras
from benchmarks.stats import Report
from workers.supervision import stop_all

SMALL = {"fast": {"start": 5, "stop": 50, "step": 5}, "slow": {"start": 20, "stop": 200, "step": 10}}
LARGE = {"fast": {"start": 2, "stop": 60, "step": 1}, "slow": {"start": 10, "stop": 300, "step": 2}}
HUGE = {**LARGE, "long_short": [False, True]}
GRIDS: dict[str, dict[str, Any]] = {"174 pairs": SMALL, "large": LARGE, "large x long/short": HUGE}
START, END = date(2020, 10, 1), date(2024, 9, 30)
GOAL_EFFICIENCY = 0.80
RUN_TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 0.02
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nifty50-daily"
CHILD = "--fanout-child"
BENCH_DATABASE = "trading_bench_fanout"
# (database, result backend): production's PostgreSQL with the project's SQLAlchemy results first; the embedded
# default (SQLite); PostgreSQL with Redis results, whose chords count their parts instead of being polled.
VARIANTS = (("postgresql", "db"), ("sqlite", "db"), ("postgresql", "redis"))


def _repeats() -> int:
    return max(1, int(os.environ.get("BENCH_REPEATS", "3")))


# --- the child: one result backend, in-process and fanned-out times -------------------------------------------


def _load_data() -> list[str]:
    from django.core.management import call_command

    from apps.marketdata.importers import candles_import_files

    call_command("migrate", verbosity=0)
    paths = sorted(p for p in DATA_DIR.glob("*.csv") if not p.stem.endswith("_INDEX"))
    for result in candles_import_files(paths=paths, interval="day"):
        if isinstance(result, Exception):
            raise result
    return [p.stem for p in paths]


def _grid_sets(grid: dict[str, Any]) -> list[Any]:
    from apps.strategies.engine.strategy import get_strategy
    from apps.strategies.run_inputs import range_values

    schema = get_strategy("sma_crossover").schema
    return schema.grid({name: range_values(name, r) for name, r in grid.items()})  # as run_submit builds them


def _in_process(bars: Any, sets: list[Any]) -> float:
    from apps.strategies.engine.backtest import Settings, run_grid

    t0 = time.perf_counter()
    run_grid("sma_crossover", sets, bars, Settings())
    return time.perf_counter() - t0


def _half(args: tuple[Any, list[dict[str, Any]], Any]) -> float:
    """One of the floor's two processes: its half of the sets, started with the other one."""
    from apps.strategies.engine.backtest import Settings, run_grid

    bars, sets, barrier = args
    run_grid("sma_crossover", sets[:2], bars, Settings())
    barrier.wait()
    t0 = time.perf_counter()
    run_grid("sma_crossover", sets, bars, Settings())
    return time.perf_counter() - t0


def _two_processes(pool: Any, manager: Any, bars: Any, sets: list[Any]) -> float:
    """The grid split in two interleaved halves, run at once by two plain processes (no Celery, no database):
    what two processes of this machine give at best. Its time is the slower half's."""
    halves = [[p.as_dict() for p in sets[k::2]] for k in (0, 1)]
    barrier = manager.Barrier(2)
    return float(max(pool.map(_half, [(bars, half, barrier) for half in halves])))


def _measure(symbols: list[str], grid: dict[str, Any], cash: float, repeats: int) -> dict[str, Any]:
    """Rounds of (in-process, two plain processes, fanned out), interleaved so that each sees the same machine;
    the best of each. One fanned run first warms the workers."""
    import multiprocessing

    from apps.strategies import data
    from apps.strategies.engine.backtest import Settings, run_grid

    bars = data.bars_load(symbols=symbols, interval="day", start=START, end=END)
    sets = _grid_sets(grid)
    run_grid("sma_crossover", sets[:2], bars, Settings())  # compiled code loaded, bars prepared
    warm = _fanned(symbols, grid, cash)
    inproc: list[float] = []
    floor: list[float] = []
    fanned: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        for k in range(repeats):
            inproc.append(_in_process(bars, sets))
            floor.append(_two_processes(pool, manager, bars, sets))
            fanned.append(_fanned(symbols, grid, cash + 1 + k))
    return {
        "sets": len(sets),
        "bars": bars.n_times,
        "symbols": bars.n_symbols,
        "in_process": {"seconds": min(inproc), "all": inproc},
        "two_processes": {"seconds": min(floor), "all": floor},
        "warm_up_run": warm,
        "fanned": min(fanned, key=lambda r: r["seconds"]),
        "all_fanned": fanned,
    }


def _fanned(symbols: list[str], grid: dict[str, Any], cash: float) -> dict[str, Any]:
    from apps.strategies import runs
    from apps.strategies.models import RunStatus

    wall0 = time.time()
    t0 = time.perf_counter()
    run, cached = runs.run_submit(
        kind="grid", strategy="sma_crossover", symbols=symbols, start=START, end=END, grid=grid,
        settings={"cash": cash},
    )  # fmt: skip
    submitted = time.perf_counter()
    if cached:
        raise RuntimeError(f"run {run.pk} came from the cache: the benchmark must not reuse runs")
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while run.status not in (RunStatus.DONE, RunStatus.FAILED):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run.pk} did not finish in {RUN_TIMEOUT_SECONDS:.0f}s")
        time.sleep(POLL_SECONDS)
        run.refresh_from_db(fields=["status", "error", "finished_at", "started_at"])
    done = time.perf_counter()
    if run.status != RunStatus.DONE:
        raise RuntimeError(f"run {run.pk} failed: {run.error}")
    chunks = runs.run_chunks(run.pk)
    first_start = min(c.started_at for c in chunks if c.started_at)
    last_end = max(c.finished_at for c in chunks if c.finished_at)
    assert run.finished_at is not None and run.started_at is not None
    return {
        "seconds": done - t0,
        "submit_s": submitted - t0,
        "chunks": len(chunks),
        "chunk_s": [round((c.finished_at - c.started_at).total_seconds(), 3) for c in chunks],  # type: ignore[operator]
        "chunks_span_s": (last_end - first_start).total_seconds(),
        "finish_after_last_chunk_s": (run.finished_at - last_end).total_seconds(),
        # the timeline, seconds from the call to run_submit (database clock and this process's: one machine)
        "timeline": {
            "submitted": submitted - t0,
            "first_chunk_started": first_start.timestamp() - wall0,
            "last_chunk_finished": last_end.timestamp() - wall0,
            "run_finished_at": run.finished_at.timestamp() - wall0,
            "seen_done": done - t0,
        },
    }


def _configure(stack: BenchStack, database: str, results: str) -> str | None:
    """Point this process and the workers at the variant's database and result backend; the PG admin URL."""
    admin = None
    env: dict[str, str] = {}
    if database == "postgresql":
        admin = ensure_database(server_url())
        execute(admin, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)", f"CREATE DATABASE {BENCH_DATABASE}")
        env["DATABASE_URL"] = with_database(server_url(), BENCH_DATABASE)
    # "db": the project's default, derived from DATABASE_URL (SQLAlchemy on the same database); else Redis.
    env["CELERY_RESULT_BACKEND"] = "" if results == "db" else stack.result_backend
    os.environ.update(env)
    stack.env.update(env)
    return admin


def child(database: str, results: str) -> dict[str, Any]:
    """One variant: `database` postgresql | sqlite, `results` db (the project's SQLAlchemy backend) | redis."""
    repeats = _repeats()
    out: dict[str, Any] = {"database": database, "results": results, "grids": {}}
    with BenchStack(f"fanout-{database}-{results}") as stack:
        admin = _configure(stack, database, results)
        try:
            app = stack.setup_django()
            out["result_backend"] = str(app.conf.result_backend).split("://")[0]
            symbols = _load_data()
            stack.start_workers(app, ["backtests", "default"])
            for n, (label, grid) in enumerate(GRIDS.items()):
                out["grids"][label] = _measure(symbols, grid, 1_000_000.0 + 100 * n, repeats)
            out["machine"] = machine_extras(stack.redis_client(), stack.broker_kind)
        finally:
            stop_all(stack.processes)  # the workers stop before their database goes
            stack.processes.clear()
            close_django()
            if admin is not None:
                execute(admin, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
    return out


# --- the runner: a child per backend, one table ---------------------------------------------------------------


def _run_child(database: str, results: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.backtest_fanout", CHILD, database, results],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the {database}/{results} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _row(result: dict[str, Any], label: str, g: dict[str, Any]) -> list[object]:
    inproc, fanned = g["in_process"]["seconds"], g["fanned"]["seconds"]
    floor = g["two_processes"]["seconds"]
    g["efficiency"] = inproc / (2 * fanned)
    g["floor_efficiency"] = inproc / (2 * floor)
    return [
        f"{label} ({g['sets']} sets), {result['database']}, {result['result_backend']} results",
        f"{inproc:.3f}",
        f"{floor:.3f}",
        f"{fanned:.3f}",
        g["fanned"]["chunks"],
        f"{g['fanned']['submit_s']:.3f}",
        f"{g['fanned']['chunks_span_s']:.3f}",
        f"{g['fanned']['finish_after_last_chunk_s']:.3f}",
        f"{g['floor_efficiency']:.0%}",
        f"{g['efficiency']:.0%}",
        f">= {GOAL_EFFICIENCY:.0%}",
        "met" if g["efficiency"] >= GOAL_EFFICIENCY else "missed",
    ]


def run() -> Report:
    results = [_run_child(database, backend) for database, backend in VARIANTS]
    rows = [_row(result, label, g) for result in results for label, g in result["grids"].items()]
    notes = [
        "in-process: run_grid on one core, bars in memory; 2 procs: the same sets split in two halves run at once "
        "by two plain processes (the machine's own ceiling: efficiency in-process / (2 x slower half))",
        "fanned: run_submit -> chord of grid_chunk on the 2 backtests processes -> chord_unlock -> grid_finish -> "
        "DONE; submit: validation, bars from the database, chunking; chunks: first chunk start to last chunk end; "
        "finish: last chunk end to run DONE (the chord's poll or counter, ranking, the best set's backtest, storing)",
        f"efficiency = in-process / (2 x fanned); goal >= {GOAL_EFFICIENCY:.0%}",
    ]
    return Report(
        title="Backtest fan-out: one core in-process vs a chord over the two backtests worker processes",
        headers=["grid", "in-process s", "2 procs s", "fanned s", "chunks", "submit s", "chunks s", "finish s",
                 "2-proc eff", "efficiency", "goal", ""],
        rows=rows,
        data={"goal_efficiency": GOAL_EFFICIENCY, "variants": results},
        machine=results[0]["machine"],
        notes=notes,
    )  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        raise SystemExit("run it as: python -m benchmarks backtest_fanout")
