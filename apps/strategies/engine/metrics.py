"""Backtest metrics from an equity curve and the kernel's trade tallies (docs/backtest-engine.md has every formula).

One compiled function (`metrics_core`) serves a single backtest and each of a grid's thousands, so a
grid never pays a Python-level pass per parameter set; `compute_metrics` names the numbers.

- returns r_t = E_t / E_{t-1} - 1 for t >= 1 (0 where E_{t-1} <= 0);
- sharpe = mean(r) / std(r, ddof=1) * sqrt(P); sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P);
  P = bars per year of the interval (`periods_per_year`); risk-free rate 0; 0 when the denominator is 0;
- cagr = (E_end / E_0) ^ (1 / years) - 1 with years = calendar days from the first to the last bar / 365.25;
- max_drawdown = max_t (1 - E_t / max_{s<=t} E_s), a positive fraction;
- win_rate = closed trades with P&L (net of charges) > 0 / closed trades; profit_factor = gross profit /
  gross loss of closed trades, capped at PROFIT_FACTOR_CAP (JSON has no infinity);
- exposure = bar-symbols holding a position at the bar's close / bar-symbols that have a bar;
- turnover = value traded (every fill) / mean equity / years: ANNUALISED;
- charges = all charges paid, rupees; trades = closed trades + those still open at the end.
"""

from __future__ import annotations

import math
import re

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["METRIC_KEYS", "PROFIT_FACTOR_CAP", "compute_metrics", "metrics_core", "periods_per_year", "years_between"]

METRIC_KEYS = (
    "final_equity",
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "exposure",
    "turnover",
    "charges",
    "trades",
)
PROFIT_FACTOR_CAP = 1000.0
TRADING_DAYS = 252
SESSION_MINUTES = 375  # NSE cash: 09:15 to 15:30
_MINUTES = re.compile(r"^(\d*)minute$")


def periods_per_year(interval: str) -> float:
    """Bars a year of the interval: day 252, minute 252 * 375, n-minute 252 * 375 / n."""
    if interval == "day":
        return float(TRADING_DAYS)
    match = _MINUTES.match(interval)
    if match is None:
        raise ValueError(f"interval: cannot annualise {interval!r}; expected 'day', 'minute' or '<n>minute'")
    n = int(match.group(1) or 1)
    if n < 1:
        raise ValueError(f"interval: {interval!r} has no minutes")
    return TRADING_DAYS * SESSION_MINUTES / n


def years_between(times: NDArray[np.datetime64]) -> float:
    """Calendar years from the first to the last bar time."""
    if len(times) < 2:
        return 0.0
    micros = int(
        times[-1].astype("datetime64[us]").astype(np.int64) - times[0].astype("datetime64[us]").astype(np.int64)
    )
    return micros / 86_400_000_000 / 365.25


@njit(cache=True)
def metrics_core(  # noqa: PLR0912 - one pass over the curve, every metric's guard inline
    equity: NDArray[np.float64],
    initial: float,
    periods: float,
    years: float,
    stats: NDArray[np.int64],
) -> NDArray[np.float64]:
    """The METRIC_KEYS values in order; `stats` is the kernel's tally (kernel.STATS)."""
    n = equity.shape[0]
    out = np.zeros(12)
    final = equity[n - 1] if n else initial
    out[0] = final
    out[1] = final / initial - 1.0
    if years > 0.0 and final > 0.0:
        out[2] = (final / initial) ** (1.0 / years) - 1.0
    elif final <= 0.0:
        out[2] = -1.0
    # One pass: mean and variance of returns (Welford), downside squares, drawdown, mean equity.
    mean = 0.0
    m2 = 0.0
    down = 0.0
    peak = equity[0] if n else initial
    worst = 0.0
    total = equity[0] if n else 0.0
    for t in range(1, n):
        e0 = equity[t - 1]
        e1 = equity[t]
        total += e1
        r = e1 / e0 - 1.0 if e0 > 0.0 else 0.0
        delta = r - mean
        mean += delta / t
        m2 += delta * (r - mean)
        if r < 0.0:
            down += r * r
        if e1 > peak:
            peak = e1
        elif peak > 0.0:
            dd = 1.0 - e1 / peak
            worst = max(worst, dd)
    k = n - 1
    if k >= 2 and m2 > 0.0:
        out[3] = mean / math.sqrt(m2 / (k - 1)) * math.sqrt(periods)
    if k >= 1 and down > 0.0:
        out[4] = mean / math.sqrt(down / k) * math.sqrt(periods)
    out[5] = worst
    closed = stats[4]
    if closed > 0:
        out[6] = stats[5] / closed
    if stats[7] > 0:
        out[7] = min(PROFIT_FACTOR_CAP, stats[6] / stats[7])
    elif stats[6] > 0:
        out[7] = PROFIT_FACTOR_CAP
    if stats[3] > 0:
        out[8] = stats[2] / stats[3]
    mean_equity = total / n if n else 0.0
    if mean_equity > 0.0:
        out[9] = stats[0] / 100.0 / mean_equity / (years if years > 0.0 else 1.0)
    out[10] = stats[1] / 100.0
    out[11] = closed + stats[8]
    return out


def compute_metrics(
    equity: NDArray[np.float64], *, initial: float, periods: float, years: float, stats: NDArray[np.int64]
) -> dict[str, float]:
    values = metrics_core(np.ascontiguousarray(equity, dtype=np.float64), float(initial), float(periods),
                          float(years), np.ascontiguousarray(stats, dtype=np.int64))  # fmt: skip
    return {key: float(value) for key, value in zip(METRIC_KEYS, values, strict=True)}
