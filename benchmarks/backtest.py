"""Backtests: our engine beside backtesting.py, backtrader, vectorbt and a bare compiled loop, on the shared data.

Why: research means thousands of backtests, and the desk's people wait on each one. The job, for every
measurement: SMA(10) vs SMA(30) of the close over the 50 NIFTY stocks of ../shared/data/nifty50-daily (48,685
bars), long only, all in, filled at the next open, no costs, 1,000,000 per symbol, trade records and metrics.

1. One backtest of the 50 symbols: ours (compiled, warm) vs backtesting.py (50 runs), backtrader (50 runs,
   cheat-on-open) and vectorbt (one 50-column call; its first, compiling call is reported apart). Goals: >= 300x
   backtesting.py, >= 1000x backtrader, >= 10x vectorbt. Every peer's final equity per symbol must equal ours to
   the paisa (disagreements are listed). Our first call in a fresh process, with an empty numba cache (it
   compiles) and with a warm one: goal <= 1 s. The floor: a bare numba loop doing the same job (its final
   equities equal ours), and our ratio to it.
2. The grid fast 5..50 step 5 x slow 20..200 step 10 (fast < slow: 174 pairs) over the 50 symbols, metrics per
   pair, one core: combination-bars per second, ours (`run_grid`, each window computed once) vs vectorbt (one
   from_signals over the 8,700 columns, vbt.MA for the windows). Goal >= 20x. Also: how many of the 8,700
   (pair, symbol) backtests hold an exact fast == slow tie (integer paise sums).
3. The live path: one evaluation of a strategy for the 50 symbols on the window live evaluation loads,
   `targets(bars.tail(lookback() + 1))` and `inputs(...)`, last row; every registered strategy (minute bars for
   intraday ones: synthetic, seeded, whole paise). Goal <= 5 ms.

The process is pinned to one CPU and numba/BLAS to one thread. Times: best of BENCH_REPEATS (default 5).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.stats import Report, bench_repeats, best_of

if TYPE_CHECKING:
    from apps.strategies.engine.bars import Bars

ROOT = Path(__file__).resolve().parent.parent
DAILY = ROOT.parent / "shared" / "data" / "nifty50-daily"
GOAL_VS_BACKTESTING = 300.0
GOAL_VS_BACKTRADER = 1000.0
GOAL_VS_VECTORBT = 10.0
GOAL_FIRST_CALL_S = 1.0
GOAL_GRID_VS_VECTORBT = 20.0
GOAL_LIVE_MS = 5.0
LIVE_CALLS = 200
PAISA = 0.005

_FIRST_CALL = """
import json, sys, time
t0 = time.perf_counter()
from apps.strategies.engine.backtest import Settings, run_backtest
from apps.strategies.engine.bars import read_csv_dir
from apps.strategies.engine.strategy import get_strategy
t1 = time.perf_counter()
bars = read_csv_dir(__import__("pathlib").Path(sys.argv[1]))
strategy = get_strategy("sma_crossover", {"fast": 10, "slow": 30})
t2 = time.perf_counter()
result = run_backtest(strategy, bars, Settings(cash=1_000_000, costs=False))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t3 - t2, "final_equity": float(result.equity[-1])}))
"""


def _met(ok: bool) -> str:
    return "yes" if ok else "MISSED"


def _disagreements(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, list[float]]:
    return {s: [ours[s], theirs[s]] for s in ours if abs(ours[s] - theirs.get(s, float("nan"))) >= PAISA}


def _first_calls() -> dict[str, Any]:
    """Our first backtest in a fresh interpreter: numba cache empty (compiles), then warm."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env["NUMBA_CACHE_DIR"] = cache
        for label in ("cold_cache", "warm_cache"):
            done = subprocess.run([sys.executable, "-c", _FIRST_CALL, str(DAILY)], cwd=ROOT, env=env,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            out[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _single(bars: Bars, repeats: int) -> dict[str, Any]:
    import numpy as np

    from apps.strategies.engine.backtest import Settings, run_backtest
    from apps.strategies.engine.strategy import get_strategy
    from benchmarks import _backtest_peers as peers

    strategy = get_strategy("sma_crossover", {"fast": peers.FAST, "slow": peers.SLOW})
    settings = Settings(cash=peers.CASH, costs=False)
    result = run_backtest(strategy, bars, settings)
    assert result.equity_by_symbol is not None
    ours = {s: float(result.equity_by_symbol[-1, j]) for j, s in enumerate(bars.symbols)}
    m: dict[str, Any] = {"trades": len(result.records), "final_equity": float(result.equity[-1])}
    m["ours_s"], m["ours_all_s"] = best_of(lambda: run_backtest(strategy, bars, settings), repeats)
    m["ours_with_trade_objects_s"] = best_of(lambda: run_backtest(strategy, bars, settings).trades_json(), repeats)[0]
    targets = strategy.targets(bars)
    m["ours_targets_s"] = best_of(lambda: strategy.targets(bars), repeats)[0]
    from apps.strategies.engine.backtest import _simulate

    m["ours_kernel_s"] = best_of(lambda: _simulate(targets, bars, settings, None, record=True), repeats)[0]

    p = bars.paise("open"), bars.paise("close"), np.ascontiguousarray(bars.valid())
    cash = round(peers.CASH * 100)
    bare = peers.bare_loop(*p, peers.FAST, peers.SLOW, cash)
    m["bare_s"] = best_of(lambda: peers.bare_loop(*p, peers.FAST, peers.SLOW, cash), max(repeats, 20))[0]
    m["bare_disagree"] = _disagreements(ours, {s: float(bare[j]) / 100 for j, s in enumerate(bars.symbols)})

    frames = peers.symbol_frames(DAILY, bars.symbols)
    for name, make in (("backtesting_py", peers.backtesting_py), ("backtrader", peers.backtrader)):
        fn = make(frames)
        theirs = fn()
        m[f"{name}_s"], m[f"{name}_all_s"] = best_of(fn, repeats)
        m[f"{name}_disagree"] = _disagreements(ours, theirs)

    vbt = peers.vectorbt_one_call(bars.close, bars.open)
    t0 = time.perf_counter()
    final = vbt()
    m["vectorbt_first_call_s"] = time.perf_counter() - t0
    m["vectorbt_s"], m["vectorbt_all_s"] = best_of(vbt, repeats)
    m["vectorbt_disagree"] = _disagreements(ours, {s: float(final[j]) for j, s in enumerate(bars.symbols)})
    return m


def _grid(bars: Bars, repeats: int) -> dict[str, Any]:
    import numpy as np

    from apps.strategies.engine.backtest import Settings, run_grid
    from apps.strategies.engine.indicators import sma_sum
    from apps.strategies.engine.strategy import IndicatorCache, get_strategy
    from benchmarks import _backtest_peers as peers

    grid = get_strategy("sma_crossover").schema.grid({"fast": range(5, 55, 5), "slow": range(20, 210, 10)})
    pairs = [(int(p["fast"]), int(p["slow"])) for p in grid]
    settings = Settings(cash=peers.CASH, costs=False)
    caches: list[IndicatorCache] = []

    def ours() -> list[dict[str, float]]:
        caches.append(IndicatorCache(bars))  # a fresh cache each time: every window computed once per grid
        return run_grid("sma_crossover", grid, bars, settings, cache=caches[-1])

    rows = ours()
    m: dict[str, Any] = {"pairs": len(pairs), "bar_symbols": int(bars.valid().sum())}
    m["ours_s"], m["ours_all_s"] = best_of(ours, repeats)
    m["windows_computed"] = caches[-1].misses
    vbt = peers.vectorbt_grid(bars.close, bars.open, pairs)
    t0 = time.perf_counter()
    totals = vbt()
    m["vectorbt_first_call_s"] = time.perf_counter() - t0
    m["vectorbt_s"], m["vectorbt_all_s"] = best_of(vbt, repeats)
    agree = [abs(r["final_equity"] - float(t)) < PAISA * bars.n_symbols for r, t in zip(rows, totals, strict=True)]
    m["vectorbt_pairs_agreeing"] = int(sum(agree))
    m["vectorbt_pairs_disagreeing"] = [list(pair) for pair, ok in zip(pairs, agree, strict=True) if not ok]

    windows = sorted({w for pair in pairs for w in pair})
    both = [sma_sum(bars, w) for w in windows]
    sums = np.stack([s for s, _ in both])
    full = np.stack([f for _, f in both])
    index = {w: k for k, w in enumerate(windows)}
    pair_ix = np.array([[index[f], index[s]] for f, s in pairs], dtype=np.int64)
    ties = peers.exact_ties(sums, full, np.array(windows, dtype=np.int64), pair_ix)
    m["tied_backtests"] = int(ties.sum())
    tied_pairs = {pairs[k] for k in np.nonzero(ties.any(axis=1))[0]}
    m["tied_pairs"] = len(tied_pairs)
    m["disagreeing_pairs_without_a_tie"] = [list(p) for p in pairs if list(p) in m["vectorbt_pairs_disagreeing"]
                                            and p not in tied_pairs]  # fmt: skip
    m["combination_bars"] = m["pairs"] * m["bar_symbols"]
    return m


def _minute_bars(symbols: tuple[str, ...], sessions: int = 3) -> Bars:
    """Synthetic minute bars: 375 a session from 09:15 IST, a seeded random walk in whole paise."""
    import numpy as np

    from apps.strategies.engine.bars import Bars

    rng = np.random.default_rng(375)
    n = sessions * 375
    day0 = np.datetime64("2024-06-10T03:45", "us")  # 09:15 IST
    minutes = np.arange(375) * np.timedelta64(1, "m")
    times = np.concatenate([day0 + np.timedelta64(d, "D") + minutes for d in range(sessions)])
    steps = rng.integers(-40, 41, size=(n + 1, len(symbols)))
    path = 100_000 + np.cumsum(steps, axis=0)
    o, c = path[:-1] / 100.0, path[1:] / 100.0
    h = np.maximum(o, c) + rng.integers(0, 20, size=o.shape) / 100.0
    lo = np.minimum(o, c) - rng.integers(0, 20, size=o.shape) / 100.0
    return Bars("minute", times, symbols, o, h, lo, c, np.full(o.shape, 1000.0))


def _live(bars: Bars) -> dict[str, Any]:
    from apps.strategies.engine.strategy import REGISTRY, get_strategy

    get_strategy("sma_crossover")  # registers the library
    minute = _minute_bars(bars.symbols)
    out: dict[str, Any] = {}
    for name in sorted(REGISTRY):
        strategy = get_strategy(name, {"fast": 10, "slow": 30} if name == "sma_crossover" else None)
        source = minute if strategy.intervals is not None and "day" not in strategy.intervals else bars
        window = source.tail(strategy.lookback() + 1)

        def evaluate(window: Bars = window, strategy: Any = strategy) -> None:
            fresh = window.slice(0, window.n_times)  # no memo carried over: each evaluation starts cold
            strategy.targets(fresh)[-1]
            {k: v[-1] for k, v in strategy.inputs(fresh).items()}

        evaluate()
        times = []
        for _ in range(LIVE_CALLS):
            t0 = time.perf_counter()
            evaluate()
            times.append(time.perf_counter() - t0)
        out[name] = {"rows": window.n_times, "interval": source.interval, "median_s": statistics.median(times),
                     "p99_s": sorted(times)[int(0.99 * (len(times) - 1))]}  # fmt: skip
    return out


def _rows(m: dict[str, Any]) -> list[list[object]]:
    s, g, first = m["single"], m["grid"], m["first_call"]
    ours = s["ours_s"]
    rows: list[list[object]] = [
        [f"ours: 50 symbols, {s['trades']} trade records + metrics (warm)", f"{ours:.5f}", "1x", "", ""],
        ["  of which targets (SMA sums, library)", f"{s['ours_targets_s']:.5f}", "", "", ""],
        ["  of which the compiled kernel", f"{s['ours_kernel_s']:.5f}", "", "", ""],
        ["ours + Trade objects and trades_json()", f"{s['ours_with_trade_objects_s']:.5f}", "", "", ""],
    ]
    for label, key, goal in (
        ("backtesting.py, 50 runs", "backtesting_py", GOAL_VS_BACKTESTING),
        ("backtrader, 50 runs (cheat-on-open)", "backtrader", GOAL_VS_BACKTRADER),
        ("vectorbt from_signals, one 50-column call", "vectorbt", GOAL_VS_VECTORBT),
    ):
        r = s[f"{key}_s"] / ours
        rows.append([label, f"{s[f'{key}_s']:.5f}", f"{r:,.0f}x slower", f">= {goal:g}x", _met(r >= goal)])
    rows.append(["vectorbt first call (compiles)", f"{s['vectorbt_first_call_s']:.3f}", "", "", ""])
    for label, key in (("empty numba cache, compiles", "cold_cache"), ("warm numba cache", "warm_cache")):
        f = first[key]
        rows.append([f"ours first call in a fresh process, {label} (import {f['import_s']:.2f}s)",
                     f"{f['first_call_s']:.3f}", "", f"<= {GOAL_FIRST_CALL_S:g} s",
                     _met(f["first_call_s"] <= GOAL_FIRST_CALL_S) if key == "warm_cache" else ""])  # fmt: skip
    rows.append(["bare compiled loop (floor), same final equities", f"{s['bare_s']:.6f}",
                 f"ours {ours / s['bare_s']:,.1f}x", "", ""])  # fmt: skip
    cb = g["combination_bars"]
    ratio = g["vectorbt_s"] / g["ours_s"]
    rows += [
        [f"grid {g['pairs']} pairs x 50: ours run_grid, 1 core ({cb / g['ours_s'] / 1e6:,.1f}M comb-bars/s)",
         f"{g['ours_s']:.4f}", "1x", "", ""],
        [f"grid: vectorbt, {g['pairs'] * 50} columns, 1 core ({cb / g['vectorbt_s'] / 1e6:,.2f}M comb-bars/s)",
         f"{g['vectorbt_s']:.4f}", f"{ratio:,.1f}x slower", f">= {GOAL_GRID_VS_VECTORBT:g}x",
         _met(ratio >= GOAL_GRID_VS_VECTORBT)],
        [f"grid: backtests with an exact fast == slow tie: {g['tied_backtests']} of {g['pairs'] * 50}", "", "", "",
         ""],
    ]  # fmt: skip
    for name, live in m["live"].items():
        ms = live["median_s"] * 1e3
        label = f"live: {name}, 50 symbols, {live['rows']} {live['interval']} bars (p99 {live['p99_s'] * 1e3:.2f} ms)"
        rows.append([label, f"{live['median_s']:.5f}", "", f"<= {GOAL_LIVE_MS:g} ms", _met(ms <= GOAL_LIVE_MS)])
    return rows


def _notes(m: dict[str, Any], preloaded: bool) -> list[str]:
    s, g = m["single"], m["grid"]
    notes = [f"times: best of {bench_repeats()}; one CPU (affinity {m['cpu']}), NUMBA_NUM_THREADS=1; "
             f"load average at start {m['load'][0]:.2f}, at end {m['load'][1]:.2f} (a shared machine)"]  # fmt: skip
    for key, label in (("backtesting_py", "backtesting.py"), ("backtrader", "backtrader"), ("vectorbt", "vectorbt"),
                       ("bare", "bare loop")):  # fmt: skip
        bad = s[f"{key}_disagree"]
        notes.append(f"{label}: final equity equal to ours to the paisa on {50 - len(bad)} of 50 symbols"
                     + (f"; differs on {json.dumps(bad)}" if bad else ""))  # fmt: skip
    untied = g["disagreeing_pairs_without_a_tie"]
    notes.append(f"grid: vectorbt's total final equity per pair equals ours (within {PAISA * 50:.2f}) on "
                 f"{g['vectorbt_pairs_agreeing']} of {g['pairs']} pairs; the {len(g['vectorbt_pairs_disagreeing'])} "
                 f"others are among the {g['tied_pairs']} pairs with an exact tie in some symbol (float averages "
                 f"break a tie either way, ours says 'not above')"
                 + (f", except {untied}" if untied else "")
                 + f"; windows computed by ours: {g['windows_computed']}; vectorbt grid first call "
                 f"{g['vectorbt_first_call_s']:.2f}s")  # fmt: skip
    if preloaded:
        notes.append("numpy was loaded before run(): the one-thread settings may not have applied")
    return notes


def run() -> Report:
    preloaded = "numpy" in sys.modules
    for var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TQDM_DISABLE"):
        os.environ[var] = "1"  # one thread each; no progress bars from backtesting.py
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    if not DAILY.is_dir():
        raise SystemExit(f"{DAILY} is absent: the backtest benchmark needs the shared NIFTY 50 daily candles")
    import numba
    import numpy as np
    import pandas  # type: ignore[import-untyped]
    import vectorbt  # type: ignore[import-untyped]

    from apps.strategies.engine.bars import read_csv_dir

    load0 = os.getloadavg()[0]
    repeats = bench_repeats()
    bars = read_csv_dir(DAILY)
    m: dict[str, Any] = {"cpu": cpu, "first_call": _first_calls()}
    m["single"] = _single(bars, repeats)
    m["grid"] = _grid(bars, repeats)
    m["live"] = _live(bars)
    m["load"] = [load0, os.getloadavg()[0]]
    import backtesting  # type: ignore[import-untyped]
    import backtrader  # type: ignore[import-untyped]

    versions = {"numpy": np.__version__, "numba": numba.__version__, "pandas": pandas.__version__,
                "vectorbt": vectorbt.__version__, "backtesting": backtesting.__version__,
                "backtrader": backtrader.__version__}  # fmt: skip
    return Report(
        title="backtest: SMA 10/30 over the NIFTY 50 daily candles, ours vs backtesting.py, backtrader, vectorbt "
        "and a bare compiled loop; the 174-pair grid; live evaluation",
        headers=["measurement", "seconds", "ratio", "goal", "met"],
        rows=_rows(m),
        data={
            "measurements": m,
            "config": {
                "repeats": repeats,
                "goals": {
                    "vs_backtesting_py": GOAL_VS_BACKTESTING,
                    "vs_backtrader": GOAL_VS_BACKTRADER,
                    "vs_vectorbt": GOAL_VS_VECTORBT,
                    "first_call_s": GOAL_FIRST_CALL_S,
                    "grid_vs_vectorbt": GOAL_GRID_VS_VECTORBT,
                    "live_ms": GOAL_LIVE_MS,
                },
            },
        },
        machine=versions,
        notes=_notes(m, preloaded),
    )
