"""Compile the backtest kernel into numba's on-disk cache: `python -m apps.strategies.engine.warm`.

numba compiles each kernel function the first time it is called with a given set of argument types, and
`cache=True` keeps the machine code in `__pycache__` for every later process. On a fresh machine that
first compilation costs seconds (9-14 s on the 2-core reference machine), so `make venv`/`make venv-dev`
and `make run` call this once: no backtest worker, command or API request pays it afterwards. With the
cache warm a first backtest in a new process costs about 0.3 s (benchmarks/backtest.py measures both).
It runs every engine path on a few synthetic bars: each sizing mode, both fills, stops, shared capital,
costs on and off, and a grid.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from apps.strategies.engine.backtest import Settings, run_backtest, run_grid
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.strategy import REGISTRY, get_strategy


def _bars(rows: int = 120, symbols: int = 2, *, minute: bool = False) -> Bars:
    rng = np.random.default_rng(7)
    close = np.round(1000 * np.exp(np.cumsum(rng.normal(0, 0.01, (rows, symbols)), axis=0)), 1)
    start = np.datetime64("2024-01-01T03:45:00", "us")  # 09:15 IST
    step = np.timedelta64(1, "m") if minute else np.timedelta64(1, "D")
    names = tuple(f"S{j}" for j in range(symbols))
    interval = "minute" if minute else "day"
    return Bars(interval, start + np.arange(rows) * step, names, close, close + 1, close - 1, close, close * 0 + 1e5)


SETTINGS: tuple[dict[str, object], ...] = (
    {},
    {"costs": False},
    {"fill": "close", "sizing": "fixed", "quantity": 5, "stop_loss": 0.02, "take_profit": 0.03},
    {"sizing": "volatility", "capital": "shared", "slippage_ticks": 1, "product": "MIS"},
)


def warm() -> float:
    """Run every path once; returns the seconds it took (long only when something was compiled)."""
    started = time.perf_counter()
    bars = _bars()
    for name, params in (("sma_crossover", {"fast": 5, "slow": 20, "long_short": True}),):
        strategy = get_strategy(name, params)
        for raw in SETTINGS:
            run_backtest(strategy, bars, Settings.from_dict(raw)).trades_json()
        run_grid(name, strategy.schema.grid({"fast": [3, 5], "slow": [10, 20]}), bars, Settings())
    for cls in REGISTRY.values():  # the built-ins' own compiled indicators (EMA, Supertrend, ...)
        strategy = cls()
        sample = _bars(375, minute=True) if cls.intraday else bars
        strategy.inputs(sample)
        run_backtest(strategy, sample, Settings())
    return time.perf_counter() - started


if __name__ == "__main__":
    seconds = warm()
    print(f"backtest kernel ready in numba's cache ({seconds:.1f} s)", file=sys.stderr)
