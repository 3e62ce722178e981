"""Indicators over (time, symbol) arrays, vectorised across symbols (pure numpy).

Rule for missing bars: a windowed indicator has a value at bar t only when all `n` bars of its window
are present; a NaN bar in the window (a symbol not yet listed, a suspended day) gives NaN. Recursive
indicators (EMA, Wilder smoothing) skip a missing bar and carry their state over it.

Moving averages of prices are computed from integer paise sums (`sma_sum`), so two averages compare
exactly: fast > slow  <=>  sum_fast * n_slow > sum_slow * n_fast, with no float rounding to break a tie.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from apps.strategies.engine.bars import Bars

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
B = NDArray[np.bool_]


def rolling_sum_int(values: I64, valid: B, n: int) -> tuple[I64, B]:
    """(sum over the last n bars, whether all n were present) for each bar; int64 exact."""
    if n < 1:
        raise ValueError(f"window must be at least 1, got {n}")
    rows = values.shape[0]
    zero = np.zeros((1, *values.shape[1:]), dtype=np.int64)
    cs = np.concatenate([zero, np.cumsum(values, axis=0, dtype=np.int64)])
    cnt = np.concatenate([zero, np.cumsum(valid, axis=0, dtype=np.int64)])
    sums = np.zeros(values.shape, dtype=np.int64)
    full = np.zeros(values.shape, dtype=bool)
    if n <= rows:
        sums[n - 1 :] = cs[n:] - cs[:-n]
        full[n - 1 :] = (cnt[n:] - cnt[:-n]) == n
    return sums, full


def sma_sum(bars: Bars, n: int, field: str = "close") -> tuple[I64, B]:
    """Exact paise sums of the last n bars of `field` and where they are defined (see the module)."""
    return rolling_sum_int(bars.paise(field), bars.valid(), n)


def sma(bars: Bars, n: int, field: str = "close") -> F64:
    """Simple moving average in rupees (NaN where the window is not full), from the exact sums."""
    sums, full = sma_sum(bars, n, field)
    return np.where(full, sums / (100.0 * n), np.nan)
