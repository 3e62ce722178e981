"""Portfolio performance and risk metrics from a series of periodic returns (pure numpy, no Django).

One definition of each metric for the risk pages, the backtester and the reports, so a Sharpe ratio
means the same thing everywhere. docs/risk-stress.md states the formulas.

Drawdown indices refer to the wealth curve, which has one more point than the returns: index 0 is the
start (wealth 1.0) and index t is the wealth after returns[t - 1]. That way a loss on the very first
period has a peak to be measured from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Drawdown", "PortfolioMetrics", "max_drawdown", "portfolio_metrics"]


@dataclass(frozen=True)
class PortfolioMetrics:
    observations: int
    volatility: float  # annualised standard deviation of the returns
    sharpe: float | None  # annualised; None when the excess returns do not vary
    sortino: float | None  # annualised; None when no period fell short of the risk-free rate
    max_drawdown: float  # fraction of the peak, positive
    max_drawdown_duration_days: int  # periods from the peak to recovery, or to the end if not recovered
    drawdown_peak_index: int  # on the wealth curve (0 = start)
    drawdown_trough_index: int  # on the wealth curve
    beta: float | None  # to the index; None without index returns or with fewer than two shared periods
    total_return: float
    annual_return: float  # geometric (compound) annual growth rate


@dataclass(frozen=True)
class Drawdown:
    depth: float
    peak_index: int
    trough_index: int
    duration: int
    recovered: bool


def max_drawdown(returns: ArrayLike) -> Drawdown:
    """The deepest fall of the wealth curve from a running peak, and how long until it was made good."""
    r = np.asarray(returns, dtype=np.float64)
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    peaks = np.maximum.accumulate(wealth)
    depth = 1.0 - wealth / peaks
    trough = int(np.argmax(depth))
    if depth[trough] <= 0.0:
        return Drawdown(depth=0.0, peak_index=0, trough_index=0, duration=0, recovered=True)
    peak = int(np.flatnonzero(wealth[: trough + 1] == peaks[trough])[-1])
    back = np.flatnonzero(wealth[trough:] >= wealth[peak])
    recovered = back.size > 0
    end = trough + int(back[0]) if recovered else wealth.size - 1
    return Drawdown(
        depth=float(depth[trough]), peak_index=peak, trough_index=trough, duration=end - peak, recovered=recovered
    )


def _beta(r: NDArray[np.float64], index_returns: ArrayLike | None) -> float | None:
    """OLS slope on the index over the periods both have a return; None when it cannot be estimated."""
    if index_returns is None:
        return None
    m = np.asarray(index_returns, dtype=np.float64)
    if m.shape != r.shape:
        raise ValueError(f"index_returns {m.shape} must align with returns {r.shape}")
    both = np.isfinite(m)
    if both.sum() < 2:
        return None
    dm, dr = m[both] - m[both].mean(), r[both] - r[both].mean()
    var_m = float(dm @ dm)
    return float(dm @ dr) / var_m if var_m > 0.0 else None


_NO_SPREAD = 1e-14  # a per-period deviation below this is rounding noise on a constant series, not risk


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > _NO_SPREAD else None


def portfolio_metrics(
    *,
    returns: ArrayLike,
    index_returns: ArrayLike | None = None,
    risk_free_annual: float = 0.0,
    periods_per_year: int = 252,
) -> PortfolioMetrics:
    """Volatility, Sharpe, Sortino, drawdown, beta and growth of one return series (simple returns per period).

    The returns must be complete (no NaN): a gap would silently shorten the drawdown and the growth.
    Index returns may have NaN; beta uses only the periods where the index has one.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size < 2 or not np.isfinite(r).all():
        raise ValueError("returns must be a one-dimensional series of at least two finite returns")
    if periods_per_year < 1 or risk_free_annual <= -1.0:
        raise ValueError("periods_per_year must be positive and risk_free_annual above -100%")
    root = math.sqrt(periods_per_year)
    excess = r - ((1.0 + risk_free_annual) ** (1.0 / periods_per_year) - 1.0)
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    mean_excess = float(excess.mean())
    sharpe = _ratio(mean_excess, float(excess.std(ddof=1)))
    sortino = _ratio(mean_excess, downside)
    total = float(np.prod(1.0 + r)) - 1.0
    drawdown = max_drawdown(r)
    return PortfolioMetrics(
        observations=int(r.size),
        volatility=float(r.std(ddof=1)) * root,
        sharpe=None if sharpe is None else sharpe * root,
        sortino=None if sortino is None else sortino * root,
        max_drawdown=drawdown.depth,
        max_drawdown_duration_days=drawdown.duration,
        drawdown_peak_index=drawdown.peak_index,
        drawdown_trough_index=drawdown.trough_index,
        beta=_beta(r, index_returns),
        total_return=total,
        annual_return=(1.0 + total) ** (periods_per_year / r.size) - 1.0 if total > -1.0 else -1.0,
    )
