"""Research on top of the backtester: walk-forward folds, choosing the best parameter set, stitching
out-of-sample equity, Monte Carlo resampling of trades, and cutting a grid into chunks of work (pure).

The Django side (`apps.strategies.runs`) decides what to run and stores what comes back; everything that
could be got wrong in the arithmetic lives here, where tests reach it without a database.

Walk-forward folds (rows of the aligned bars, stop exclusive)::

    rolling:   [train 0      ][test 0]
                       [train 1      ][test 1]
                               [train 2      ][test 2]
    anchored:  [train 0      ][test 0]
               [train 1              ][test 1]
               [train 2                      ][test 2]

The test windows tile the bars after the first training window; every training window ends where its
test window starts, so nothing a fold chooses in sample has seen a bar of its out-of-sample period.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_THROUGHPUT",
    "MC_PERCENTILES",
    "OBJECTIVES",
    "Fold",
    "ResearchError",
    "choose_best",
    "chunk_work",
    "merge_dealt",
    "monte_carlo",
    "stitch",
    "trade_returns",
    "trade_stats",
    "walk_forward_folds",
]

# Metrics a grid or a walk-forward may optimise, and whether larger is better.
OBJECTIVES: dict[str, bool] = {
    "sharpe": True,
    "sortino": True,
    "total_return": True,
    "cagr": True,
    "final_equity": True,
    "profit_factor": True,
    "win_rate": True,
    "max_drawdown": False,
}
MC_PERCENTILES = (5, 25, 50, 75, 95)
# Combination-bars (parameter sets x bars x symbols) per second that `run_grid` does on one core of the
# development machine with costs on (benchmarks/backtest_fanout.py measures it); chunk sizing falls back to
# it until the database has timings of finished chunks (apps.strategies.runs.grid_throughput).
DEFAULT_THROUGHPUT = 1.0e8
_MC_BLOCK = 1 << 22  # at most this many path-steps in memory at once

P = TypeVar("P")


class ResearchError(ValueError):
    """Bad research options; `field` names the option (`folds`, `train_fraction`, `simulations`, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- walk-forward ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold as row ranges of the bars (start inclusive, stop exclusive)."""

    index: int
    train_start: int
    train_stop: int
    test_start: int
    test_stop: int

    @property
    def train_bars(self) -> int:
        return self.train_stop - self.train_start

    @property
    def test_bars(self) -> int:
        return self.test_stop - self.test_start

    def as_dict(self) -> dict[str, int]:
        return {
            "index": self.index,
            "train_start": self.train_start,
            "train_stop": self.train_stop,
            "test_start": self.test_start,
            "test_stop": self.test_stop,
        }


def walk_forward_folds(
    n_bars: int,
    *,
    folds: int,
    mode: str = "rolling",
    train_fraction: float | None = None,
    train_bars: int | None = None,
    min_train: int = 2,
    min_test: int = 2,
) -> list[Fold]:
    """`folds` folds over `n_bars` rows: the first training window, then test windows that tile the rest.

    The first training window is `train_bars` rows, or sized so that it is `train_fraction` of a fold's
    window (train / (train + test)): L = n f / (f + folds (1 - f)). Each test window is (n - L) // folds
    rows, the last one takes the remainder. Rolling: every training window is L rows ending where its test
    starts; anchored: it starts at row 0. Give exactly one of `train_fraction` and `train_bars` (neither:
    a fraction of 0.75).
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ResearchError("folds", f"must be a whole number of at least 1, got {folds!r}")
    if mode not in ("rolling", "anchored"):
        raise ResearchError("mode", f"must be rolling or anchored, got {mode!r}")
    first = _first_train(n_bars, folds, train_fraction, train_bars)
    field = "train_bars" if train_bars is not None else "train_fraction"
    if first < min_train:
        raise ResearchError(field, f"leaves {first} bars in sample; at least {min_train} are needed")
    test = (n_bars - first) // folds
    if test < min_test:
        raise ResearchError(
            field,
            f"{n_bars} bars, {first} in sample, leave {test} bars per out-of-sample window for {folds} folds; "
            f"at least {min_test} are needed (fewer folds, a smaller training window, or a longer range)",
        )
    out = []
    for k in range(folds):
        test_start = first + k * test
        test_stop = n_bars if k == folds - 1 else test_start + test
        train_start = 0 if mode == "anchored" else test_start - first
        out.append(Fold(k, train_start, test_start, test_start, test_stop))
    return out


def _first_train(n_bars: int, folds: int, fraction: float | None, bars: int | None) -> int:
    if fraction is not None and bars is not None:
        raise ResearchError("train_bars", "give train_fraction or train_bars, not both")
    if bars is not None:
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
            raise ResearchError("train_bars", f"must be a whole number of bars, at least 1, got {bars!r}")
        if bars >= n_bars:
            raise ResearchError("train_bars", f"{bars} bars in sample leave nothing out of sample ({n_bars} bars)")
        return bars
    f = 0.75 if fraction is None else fraction
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0.0 < f < 1.0:
        raise ResearchError("train_fraction", f"must be a number strictly between 0 and 1, got {f!r}")
    return math.floor(n_bars * f / (f + folds * (1.0 - f)))


# --- choosing and stitching -----------------------------------------------------------------------------------


def choose_best(rows: Sequence[Mapping[str, Any]], objective: str) -> int:
    """Index of the best row by `objective` (max_drawdown: the smallest; others: the largest).

    A row whose objective is missing or not finite (no trades: no Sharpe) is never preferred to one that has
    it; among equals the first row wins, so the choice is the same on every machine. With no finite value
    at all the first row is chosen.
    """
    if objective not in OBJECTIVES:
        raise ResearchError("objective", f"must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not rows:
        raise ResearchError("rows", "nothing to choose from")
    larger = OBJECTIVES[objective]
    best, best_value = 0, None
    for i, row in enumerate(rows):
        value = _finite(row.get(objective))
        if value is None:
            continue
        if best_value is None or (value > best_value if larger else value < best_value):
            best, best_value = i, value
    return best


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def stitch(
    segments: Sequence[tuple[NDArray[np.int64], NDArray[np.float64]]], start_equity: float
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Chain out-of-sample equity segments (times_us, equity) into one curve that starts at `start_equity`.

    Each segment is that fold's backtest, starting from its own cash; it enters the stitched curve by its
    growth (equity / its first value), compounded on where the previous fold ended. Segments must follow
    one another in time.
    """
    times: list[NDArray[np.int64]] = []
    values: list[NDArray[np.float64]] = []
    carry, last = float(start_equity), None
    for k, (raw_t, raw_e) in enumerate(segments):
        t = np.asarray(raw_t, dtype=np.int64)
        e = np.asarray(raw_e, dtype=np.float64)
        if t.shape != e.shape or t.ndim != 1:
            raise ResearchError("segments", f"segment {k}: times {t.shape} and equity {e.shape} differ")
        if len(t) == 0:
            continue
        if last is not None and int(t[0]) <= last:
            raise ResearchError("segments", f"segment {k} starts before the previous one ends")
        if not e[0] > 0:
            raise ResearchError("segments", f"segment {k} starts at equity {e[0]!r}; it must be positive")
        scaled = carry * e / e[0]
        times.append(t)
        values.append(scaled)
        carry, last = float(scaled[-1]), int(t[-1])
    if not times:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    return np.concatenate(times), np.concatenate(values)


def trade_stats(trades: Sequence[Mapping[str, Any]], *, exposed: int, valid: int) -> NDArray[np.int64]:
    """The kernel's tally (`kernel.STATS` order) rebuilt from trade records, for metrics of a stitched curve.

    Traded value counts the entry and, for a closed trade, the exit fill; a trade still open at the end
    (exit_reason "open") was marked, not sold. Amounts are whole paise, as the kernel keeps them.
    """
    traded = charges = closed = wins = profit = loss = still_open = 0
    for t in trades:
        q = abs(int(t["quantity"]))
        paise = round(float(t["pnl"]) * 100)
        traded += round(q * float(t["entry_price"]) * 100)
        charges += round(float(t["charges"]) * 100)
        if t["exit_reason"] == "open":
            still_open += 1
            continue
        traded += round(q * float(t["exit_price"]) * 100)
        closed += 1
        if paise > 0:
            wins += 1
            profit += paise
        else:
            loss -= paise
    return np.array([traded, charges, exposed, valid, closed, wins, profit, loss, still_open], dtype=np.int64)


def trade_returns(
    trades: Sequence[Mapping[str, Any]], times_us: NDArray[np.int64], equity: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Each trade's P&L (net of charges) over the account's equity at the close before its entry.

    That is the fraction of the account the trade made or lost, which is what compounding in a new order
    means; the first bar's equity stands in for a trade that enters on the first bar.
    """
    if len(equity) == 0:
        raise ResearchError("equity", "the source run has no equity curve")
    t = np.asarray(times_us, dtype=np.int64)
    out = np.empty(len(trades))
    for k, trade in enumerate(trades):
        entry = datetime.fromisoformat(str(trade["entry_time"]))
        row = max(0, int(np.searchsorted(t, int(entry.timestamp() * 1_000_000), side="left")) - 1)
        base = float(equity[row])
        if not base > 0:
            raise ResearchError("equity", f"the equity before trade {k} is {base!r}; returns need it positive")
        out[k] = float(trade["pnl"]) / base
    return out


# --- Monte Carlo ----------------------------------------------------------------------------------------------


def monte_carlo(
    trade_returns: Sequence[float] | NDArray[np.float64],
    *,
    simulations: int = 10_000,
    method: str = "bootstrap",
    start_equity: float = 1_000_000.0,
    ruin_threshold: float = 0.5,
    seed: int = 0,
    bins: int = 30,
) -> dict[str, Any]:
    """Distributions of max drawdown and final equity over resampled orders of the trades.

    Each path compounds the trades' returns (a trade's P&L over the account's equity when it was opened) in
    a new order: `shuffle` permutes them (the final equity stays that of the real run, only the path and
    its drawdowns change), `bootstrap` draws as many trades with replacement (both change). A path is
    ruined when its equity falls to start_equity x (1 - ruin_threshold) or below at any point.
    """
    r = _trade_returns(trade_returns)
    if isinstance(simulations, bool) or not isinstance(simulations, int) or not 1 <= simulations <= 10_000_000:
        raise ResearchError("simulations", f"must be a whole number from 1 to 10,000,000, got {simulations!r}")
    if method not in ("bootstrap", "shuffle"):
        raise ResearchError("method", f"must be bootstrap or shuffle, got {method!r}")
    if not 0.0 < ruin_threshold <= 1.0:
        raise ResearchError("ruin_threshold", f"must be a fraction of equity lost in (0, 1], got {ruin_threshold!r}")
    if not (math.isfinite(start_equity) and start_equity > 0):
        raise ResearchError("start_equity", f"must be positive, got {start_equity!r}")
    rng = np.random.default_rng(seed)
    n = len(r)
    max_dd = np.empty(simulations)
    final = np.empty(simulations)
    ruined = np.zeros(simulations, dtype=bool)
    floor = start_equity * (1.0 - ruin_threshold)
    block = max(1, _MC_BLOCK // n)
    for lo in range(0, simulations, block):
        hi = min(simulations, lo + block)
        if method == "bootstrap":
            draws = r[rng.integers(0, n, size=(hi - lo, n))]
        else:
            draws = rng.permuted(np.broadcast_to(r, (hi - lo, n)), axis=1)
        equity = start_equity * np.cumprod(1.0 + draws, axis=1)
        peak = np.maximum(np.maximum.accumulate(equity, axis=1), start_equity)
        max_dd[lo:hi] = np.max(1.0 - equity / peak, axis=1)
        final[lo:hi] = equity[:, -1]
        ruined[lo:hi] = np.min(equity, axis=1) <= floor
    return {
        "method": method,
        "simulations": simulations,
        "trades": n,
        "start_equity": start_equity,
        "ruin_threshold": ruin_threshold,
        "seed": seed,
        "probability_of_ruin": float(np.mean(ruined)),
        "max_drawdown": distribution(max_dd, bins=bins),
        "final_equity": distribution(final, bins=bins),
    }


def _trade_returns(raw: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    r = np.asarray(raw, dtype=np.float64).ravel()
    if r.size == 0:
        raise ResearchError("trades", "there are no trades to resample")
    if not np.all(np.isfinite(r)):
        raise ResearchError("trades", "trade returns must be finite numbers")
    if np.any(r < -1.0):
        raise ResearchError("trades", f"a trade cannot lose more than everything (return {float(r.min())!r})")
    return r


def distribution(sample: NDArray[np.float64], *, bins: int = 30) -> dict[str, Any]:
    """{"percentiles": {"5": x, ..., "95": x}, "histogram": {"edges": [...], "counts": [...]}} of a sample."""
    values = np.percentile(sample, MC_PERCENTILES)
    lo, hi = float(np.min(sample)), float(np.max(sample))
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi), 1.0):
        # One value up to rounding (a shuffle's final equity): one bin, not 30 empty slivers of noise.
        counts, edges = np.array([len(sample)]), np.array([lo, hi])
    else:
        counts, edges = np.histogram(sample, bins=bins)
    return {
        "percentiles": {str(q): float(v) for q, v in zip(MC_PERCENTILES, values, strict=True)},
        "mean": float(np.mean(sample)),
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


# --- chunking a grid ------------------------------------------------------------------------------------------


def chunk_work(
    param_sets: Sequence[P],
    bars_per_set: int,
    target_seconds: float = 1.0,
    throughput: float = DEFAULT_THROUGHPUT,
    *,
    parallel: int = 2,
    max_chunks: int = 256,
) -> list[list[P]]:
    """Deal `param_sets` into chunks of about `target_seconds` of work each, or more.

    Work is estimated as sets x `bars_per_set` (bars x symbols) / `throughput` (combination-bars per
    second). The chunk count is the whole number of target-sized chunks that fit, rounded DOWN to a
    multiple of `parallel` (the pool's processes) so that no round of the pool runs half empty, and at
    least `parallel` so that even a small grid uses every process; never more chunks than sets, nor more
    than `max_chunks` (a chord's header is a message each).

    The sets are DEALT, not cut: chunk k gets sets k, k + n, k + 2n, ... A grid's cost is not even along
    its order (the first SMA rows pair a short fast window with every slow one: more indicators to
    compute), so contiguous chunks would finish at different times; dealt ones are alike, and differ by at
    most one set. `merge_dealt` puts their results back in the sets' order.
    """
    if not param_sets:
        return []
    if bars_per_set < 1 or target_seconds <= 0 or throughput <= 0 or parallel < 1:
        raise ResearchError("chunking", "bars_per_set, target_seconds, throughput and parallel must be positive")
    seconds = len(param_sets) * bars_per_set / throughput
    fitting = int(seconds // target_seconds)
    count = max(parallel, fitting - fitting % parallel)
    count = max(1, min(count, len(param_sets), max_chunks))
    return [list(param_sets[k::count]) for k in range(count)]


def merge_dealt(parts: Sequence[Sequence[P] | None]) -> list[P]:
    """The items of chunks made by `chunk_work`, in the original order; a missing chunk (None) is skipped."""
    longest = max((len(p) for p in parts if p is not None), default=0)
    return [part[i] for i in range(longest) for part in parts if part is not None and i < len(part)]
