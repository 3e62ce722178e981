"""VaR backtesting: does the model's VaR get breached as often as it promises, and not in clusters? (pure numpy)

A 99% VaR that is right is breached on about 1% of days (Kupiec's proportion-of-failures test), and a
breach today says nothing about tomorrow (Christoffersen's independence test); a model that fails either
understates risk when it matters. Both are likelihood-ratio tests whose statistics are chi-square
distributed, so the p-values need only math.erfc (1 degree of freedom) and math.exp (2): no scipy.

Conventions: VaR forecasts are positive rupee losses; day t is an exception when its loss exceeds the
forecast made for it, i.e. -pnl[t] > var[t] (a loss exactly equal to VaR is not an exception).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BacktestResult",
    "ChristoffersenResult",
    "KupiecResult",
    "chi2_1_sf",
    "chi2_2_sf",
    "christoffersen_independence",
    "kupiec_pof",
    "rolling_historical_var",
    "var_backtest",
]


@dataclass(frozen=True)
class KupiecResult:
    observations: int
    exceptions: int
    expected_rate: float
    observed_rate: float
    lr: float
    p_value: float


@dataclass(frozen=True)
class ChristoffersenResult:
    n00: int  # no exception followed by none
    n01: int  # no exception followed by an exception
    n10: int  # exception followed by none
    n11: int  # exception followed by another: clustering
    lr: float
    p_value: float


@dataclass(frozen=True)
class BacktestResult:
    confidence: float
    kupiec: KupiecResult
    christoffersen: ChristoffersenResult
    conditional_coverage_lr: float
    conditional_coverage_p: float
    exception_indices: tuple[int, ...]  # positions in the arrays given to var_backtest


def chi2_1_sf(x: float) -> float:
    """P(chi-square with 1 dof > x): the square of a standard normal, so erfc(sqrt(x/2))."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2.0))


def chi2_2_sf(x: float) -> float:
    """P(chi-square with 2 dof > x): an exponential with mean 2."""
    return math.exp(-max(x, 0.0) / 2.0)


def _xlogp(count: int, probability: float) -> float:
    """count * log(probability), with 0 * log(0) = 0: a term for an event never seen contributes nothing."""
    return 0.0 if count == 0 else count * math.log(probability)


def _bernoulli_loglik(failures: int, successes: int, probability: float) -> float:
    """Log-likelihood of `failures` exceptions and `successes` quiet days at exception rate `probability`."""
    return _xlogp(failures, probability) + _xlogp(successes, 1.0 - probability)


def _as_flags(exceptions: Sequence[bool] | ArrayLike) -> NDArray[np.bool_]:
    flags = np.asarray(exceptions)
    if flags.ndim != 1:
        raise ValueError(f"exceptions must be one sequence of days, not shape {flags.shape}")
    return flags.astype(bool)


def kupiec_pof(exceptions: Sequence[bool] | ArrayLike, *, confidence: float) -> KupiecResult:
    """Kupiec (1995): is the exception rate consistent with 1 - confidence? LR ~ chi-square(1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    flags = _as_flags(exceptions)
    n, x = int(flags.size), int(flags.sum())
    if n == 0:
        raise ValueError("no observations to backtest")
    p, observed = round(1.0 - confidence, 15), x / n  # round: 1 - 0.99 is 0.01 plus noise
    lr = max(0.0, -2.0 * (_bernoulli_loglik(x, n - x, p) - _bernoulli_loglik(x, n - x, observed)))
    return KupiecResult(
        observations=n, exceptions=x, expected_rate=p, observed_rate=observed, lr=lr, p_value=chi2_1_sf(lr)
    )


def christoffersen_independence(exceptions: Sequence[bool] | ArrayLike) -> ChristoffersenResult:
    """Christoffersen (1998): is an exception as likely after a quiet day as after an exception? LR ~ chi2(1)."""
    flags = _as_flags(exceptions).astype(np.int64)
    if flags.size < 2:
        raise ValueError("the independence test needs at least two days")
    pairs = flags[:-1] * 2 + flags[1:]  # 0: 0->0, 1: 0->1, 2: 1->0, 3: 1->1
    n00, n01, n10, n11 = (int(c) for c in np.bincount(pairs, minlength=4))
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    restricted = _bernoulli_loglik(n01 + n11, n00 + n10, pi)
    unrestricted = _bernoulli_loglik(n01, n00, pi01) + _bernoulli_loglik(n11, n10, pi11)
    lr = max(0.0, -2.0 * (restricted - unrestricted))
    return ChristoffersenResult(n00=n00, n01=n01, n10=n10, n11=n11, lr=lr, p_value=chi2_1_sf(lr))


def var_backtest(*, pnl: ArrayLike, var_forecasts: ArrayLike, confidence: float) -> BacktestResult:
    """Both tests over the days with a forecast and a P&L; days missing either (NaN) are left out.

    Conditional coverage (Christoffersen) is the sum of the two statistics, chi-square(2).
    """
    p = np.asarray(pnl, dtype=np.float64)
    v = np.asarray(var_forecasts, dtype=np.float64)
    if p.shape != v.shape or p.ndim != 1:
        raise ValueError(f"pnl {p.shape} and var_forecasts {v.shape} must be the same one-dimensional shape")
    usable = np.flatnonzero(np.isfinite(p) & np.isfinite(v))
    flags = -p[usable] > v[usable]
    kupiec = kupiec_pof(flags, confidence=confidence)
    independence = christoffersen_independence(flags)
    cc_lr = kupiec.lr + independence.lr
    return BacktestResult(
        confidence=confidence,
        kupiec=kupiec,
        christoffersen=independence,
        conditional_coverage_lr=cc_lr,
        conditional_coverage_p=chi2_2_sf(cc_lr),
        exception_indices=tuple(int(i) for i in usable[flags]),
    )


def rolling_historical_var(*, portfolio_pnl: ArrayLike, window: int, confidence: float) -> NDArray[np.float64]:
    """Historical-simulation VaR forecast for each day from the `window` days before it (NaN until then).

    The forecast for day t uses days t-window..t-1 only, never day t itself, so a backtest of it is honest.
    The quantile is the empirical one rounded towards the worse loss (numpy's "lower" method on P&L):
    with 250 days at 99% that is the third-worst day, not an interpolation towards the fourth.
    NaN P&L inside a window is ignored; a window with no P&L at all gives NaN.
    """
    x = np.asarray(portfolio_pnl, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"portfolio_pnl must be one-dimensional, not shape {x.shape}")
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    out = np.full(x.shape, np.nan)
    if x.size <= window:
        return out
    windows = sliding_window_view(x[:-1], window)  # row k holds days k..k+window-1, forecasting day k+window
    usable = np.isfinite(windows).any(axis=1)
    if usable.any():
        quantiles = np.nanquantile(windows[usable], 1.0 - confidence, axis=1, method="lower")
        out[window:][usable] = -quantiles
    return out
