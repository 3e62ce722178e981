"""What every VaR method shares: the result type, the input error, and the validation of its inputs.

Why a module of its own: the historical, parametric and Monte Carlo engines live in separate modules
(apps.risk.quant.var, apps.risk.quant.montecarlo) and must agree on one result shape and one reading of bad
input. `apps.risk.quant.var` re-exports all of it; callers import from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

CONFIDENCES = (0.95, 0.99, 0.995)
METHODS = ("historical", "parametric", "montecarlo")


class VarInputError(ValueError):
    """Bad shapes, NaNs, a confidence outside (0, 1), a horizon below one day, too few rows or paths."""


@dataclass(frozen=True, eq=False)
class VarResult:
    """One VaR/ES figure with what a risk manager needs to trust it (see docs/risk-var.md).

    Sign convention: `var` and `es` are LOSSES in rupees (positive when the book loses); `pnl_sample` is P&L
    (negative = loss). Arrays are read-only. eq=False: arrays have no single truth value to compare.
    """

    method: str
    confidence: float
    horizon_days: int
    var: float
    es: float
    var_se: float | None
    es_se: float | None
    component: FloatArray
    marginal: FloatArray
    pnl_sample: FloatArray
    paths: int | None
    distribution: str | None
    warnings: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("component", "marginal", "pnl_sample"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)


def check_confidence(confidence: float) -> float:
    try:
        value = float(confidence)
    except (TypeError, ValueError) as exc:
        raise VarInputError(f"confidence must be a number, got {confidence!r}") from exc
    if not 0.0 < value < 1.0:
        raise VarInputError(f"confidence must be inside (0, 1), got {confidence!r}")
    return value


def check_horizon(horizon_days: int) -> int:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int | np.integer):
        raise VarInputError(f"horizon_days must be an integer, got {horizon_days!r}")
    if horizon_days < 1:
        raise VarInputError(f"horizon_days must be at least 1, got {horizon_days}")
    return int(horizon_days)


def _first_bad(a: FloatArray) -> tuple[int, ...] | None:
    bad = np.argwhere(~np.isfinite(a))
    return tuple(int(i) for i in bad[0]) if bad.size else None


def _as_float(name: str, value: ArrayLike) -> FloatArray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise VarInputError(f"{name} must be numeric: {exc}") from exc


def check_exposures(exposures: ArrayLike) -> FloatArray:
    """Rupee value per position (quantity x price, short negative): one finite number per instrument."""
    w = _as_float("exposures", exposures)
    if w.ndim != 1 or w.size == 0:
        raise VarInputError(f"exposures must be a non-empty 1-D array, got shape {w.shape}")
    bad = _first_bad(w)
    if bad is not None:
        raise VarInputError(f"exposures has a non-finite value at position {bad[0]}")
    return w


def check_returns(returns: ArrayLike, n_instruments: int, *, min_rows: int = 2) -> FloatArray:
    """Daily simple returns, rows = days (oldest first), one column per exposure; NaN names its row and column."""
    r = _as_float("returns", returns)
    if r.ndim != 2 or r.shape[1] != n_instruments:
        raise VarInputError(f"returns must have shape (days, {n_instruments}), got {r.shape}")
    bad = _first_bad(r)
    if bad is not None:
        raise VarInputError(f"returns has a non-finite value in column {bad[1]} at row {bad[0]}")
    if r.shape[0] < min_rows:
        raise VarInputError(f"returns needs at least {min_rows} rows, got {r.shape[0]}")
    if np.any(r <= -1.0):
        row, col = (int(i) for i in np.argwhere(r <= -1.0)[0])
        raise VarInputError(f"returns has a return <= -100% in column {col} at row {row}")
    return r


def check_mean(mean: ArrayLike | None, n_instruments: int) -> FloatArray:
    """Mean daily return per instrument; None means zero (the sample mean of a few years is mostly noise)."""
    if mean is None:
        return np.zeros(n_instruments)
    mu = _as_float("mean", mean)
    if mu.shape != (n_instruments,):
        raise VarInputError(f"mean must have shape ({n_instruments},), got {mu.shape}")
    bad = _first_bad(mu)
    if bad is not None:
        raise VarInputError(f"mean has a non-finite value at position {bad[0]}")
    return mu


def check_cov_shape(cov: ArrayLike, n_instruments: int) -> FloatArray:
    c = _as_float("cov", cov)
    if c.shape != (n_instruments, n_instruments):
        raise VarInputError(f"cov must have shape ({n_instruments}, {n_instruments}), got {c.shape}")
    return c


def tail_count(confidence: float, n: int) -> int:
    """ceil(c n) with rounding slack: 0.99 * 1000 is 990.0000000000001 in floating point, and means 990."""
    return max(1, min(n, math.ceil(confidence * n - 1e-9)))


def neighbourhood_ranks(confidence: float, n: int, *, minimum: int) -> int:
    """Half-width d (in ranks) of the neighbourhood of the VaR scenario: 10% of the tail count, at least `minimum`."""
    return max(minimum, math.ceil(0.1 * (1.0 - confidence) * n - 1e-9))
