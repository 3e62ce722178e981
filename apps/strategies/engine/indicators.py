"""Indicators over (time, symbol) arrays, vectorised across symbols (pure numpy; numba for the recursions).

Rule for missing bars: a windowed indicator has a value at bar t only when all `n` bars of its window
are present; a NaN bar in the window (a symbol not yet listed, a suspended day) gives NaN. Recursive
indicators (EMA, Wilder smoothing) skip a missing bar and carry their state over it.

Moving averages of prices are computed from integer paise sums (`sma_sum`), so two averages compare
exactly: fast > slow  <=>  sum_fast * n_slow > sum_slow * n_fast, with no float rounding to break a tie.

Two kinds of indicator, and what each means for live == backtest (docs/strategies.md):

- windowed (SMA, Bollinger, Donchian, the opening range): the value at t is a function of the last n
  bars only, computed from exact integer paise sums or exact maxima, so any window that holds those
  bars gives the same value, bit for bit;
- recursive (EMA, Wilder's RSI and ATR, Supertrend): the value at t depends on every earlier bar
  through a state seeded at the first bars the function sees. A seed's influence shrinks by (1 - alpha)
  per bar; `settle_bars(alpha)` is how many bars it takes to fall below float64 resolution, after
  which a window's state and the whole history's agree to rounding, and their targets agree.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from apps.strategies.engine.bars import Bars

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
B = NDArray[np.bool_]

IST_OFFSET_US = 19_800_000_000  # +05:30: India has had one fixed offset since 1945 (no DST)
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
NSE_OPEN_MINUTE = 9 * 60 + 15  # 09:15 IST, the normal market's open
NSE_CLOSE_MINUTE = 15 * 60 + 30  # 15:30 IST
SESSION_MINUTES = NSE_CLOSE_MINUTE - NSE_OPEN_MINUTE  # 375 one-minute bars

__all__ = [
    "atr",
    "bollinger",
    "bollinger_parts",
    "donchian",
    "ema",
    "ema_values",
    "opening_range",
    "rolling_max",
    "rolling_min",
    "rolling_sum_int",
    "rsi",
    "session_clock",
    "session_starts",
    "settle_bars",
    "sma",
    "sma_sum",
    "supertrend",
    "true_range",
    "wilder_values",
]


def _check_window(n: int, name: str = "window") -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name} must be an integer of at least 1, got {n!r}")


def rolling_sum_int(values: I64, valid: B, n: int) -> tuple[I64, B]:
    """(sum over the last n bars, whether all n were present) for each bar; int64 exact."""
    if n < 1:
        raise ValueError(f"window must be at least 1, got {n}")
    return _rolling_sum_int(np.ascontiguousarray(values, np.int64), np.ascontiguousarray(valid, np.bool_), n)


@njit(cache=True)
def _rolling_sum_int(values: I64, valid: B, n: int) -> tuple[I64, B]:
    """One running sum per column (a compiled loop: ~20x numpy's cumsum-and-difference on 1000 x 50)."""
    rows, cols = values.shape
    sums = np.zeros((rows, cols), dtype=np.int64)
    full = np.zeros((rows, cols), dtype=np.bool_)
    for j in range(cols):
        total = 0
        count = 0
        for t in range(rows):
            total += values[t, j]
            count += valid[t, j]
            if t >= n:
                total -= values[t - n, j]
                count -= valid[t - n, j]
            if t >= n - 1:
                sums[t, j] = total
                full[t, j] = count == n
    return sums, full


@njit(cache=True)
def sums_regime(  # noqa: PLR0917 - a compiled function: positional arguments
    fast_sum: I64, fast_ok: B, slow_sum: I64, slow_ok: B, fast_n: int, slow_n: int, short: bool
) -> F64:
    """Crossover targets from exact window sums in one pass: +1 where fast_sum/fast_n > slow_sum/slow_n
    (compared as fast_sum * slow_n > slow_sum * fast_n, so a tie is exact and counts as "not above"),
    else 0 (-1 with `short`); NaN where either window is not full. What `crossover_regime` gives, faster."""
    rows, cols = fast_sum.shape
    out = np.empty((rows, cols), dtype=np.float64)
    below = -1.0 if short else 0.0
    for t in range(rows):
        for j in range(cols):
            if fast_ok[t, j] and slow_ok[t, j]:
                out[t, j] = 1.0 if fast_sum[t, j] * slow_n > slow_sum[t, j] * fast_n else below
            else:
                out[t, j] = np.nan
    return out


def sma_sum(bars: Bars, n: int, field: str = "close") -> tuple[I64, B]:
    """Exact paise sums of the last n bars of `field` and where they are defined (see the module)."""
    return rolling_sum_int(bars.paise(field), bars.valid(), n)


def sma(bars: Bars, n: int, field: str = "close") -> F64:
    """Simple moving average in rupees (NaN where the window is not full), from the exact sums."""
    sums, full = sma_sum(bars, n, field)
    return np.where(full, sums / (100.0 * n), np.nan)


# --- recursive smoothing ------------------------------------------------------------------------------


def settle_bars(alpha: float) -> int:
    """Bars after which a recursion `s = (1 - alpha) * s + alpha * x` no longer depends on its seed.

    The seed's weight after k bars is (1 - alpha)^k; at k = 40 / -ln(1 - alpha) it is e^-40 (4e-18),
    below float64's resolution (1.1e-16) even for a seed that was 30 times off. From there on a window's
    state and the whole history's differ by rounding at most, which can change a target only at a float
    tie. Measured on the 50 NIFTY stocks (docs/strategies.md): targets agree from about 10 / alpha bars
    on, the states themselves bit for bit from about 44 / alpha.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if alpha == 1.0:
        return 1
    return math.ceil(40.0 / -math.log1p(-alpha))


@njit(cache=True)
def _smooth_kernel(x: F64, n: int, alpha: float) -> F64:  # pragma: no cover - compiled
    rows, cols = x.shape
    out = np.full((rows, cols), np.nan)
    for j in range(cols):
        count = 0
        acc = 0.0
        state = 0.0
        for t in range(rows):
            v = x[t, j]
            if np.isnan(v):
                continue
            if count < n:
                acc += v
                count += 1
                if count == n:
                    state = acc / n
                    out[t, j] = state
            else:
                state += alpha * (v - state)  # a constant input keeps the state exactly constant
                out[t, j] = state
    return out


def _smooth(values: F64, n: int, alpha: float) -> F64:
    _check_window(n)
    x = np.ascontiguousarray(values, dtype=np.float64)
    if x.ndim == 1:
        out: F64 = _smooth_kernel(x[:, None], int(n), float(alpha))[:, 0]
        return out
    result: F64 = _smooth_kernel(x, int(n), float(alpha))
    return result


def ema_values(values: F64, n: int) -> F64:
    """EMA with alpha 2/(n+1), seeded with the mean of the first n present values; NaN at missing bars.

    `values` is (T,) or (T, N) with NaN for a missing bar: the recursion skips it (the state carries
    over) and the output there is NaN.
    """
    return _smooth(values, n, 2.0 / (n + 1.0))


def wilder_values(values: F64, n: int) -> F64:
    """Wilder's smoothing (an EMA with alpha 1/n), seeded with the mean of the first n present values."""
    return _smooth(values, n, 1.0 / n)


def _paise_or_nan(bars: Bars, field: str) -> F64:
    return np.where(bars.valid(), bars.paise(field).astype(np.float64), np.nan)


def ema(bars: Bars, n: int, field: str = "close") -> F64:
    """Exponential moving average of a price field in rupees (see `ema_values`).

    Computed on whole paise (exact seeds: a flat price gives an EMA exactly equal to it, so a fast and a
    slow EMA of a flat market tie, and a tie is "not above") and divided by 100 at the end.
    """
    return ema_values(_paise_or_nan(bars, field), n) / 100.0


def rsi(bars: Bars, n: int = 14, field: str = "close") -> F64:
    """Wilder's RSI in [0, 100]; NaN before the n-th change and at missing bars.

    The change of a bar is against the previous PRESENT bar, in exact paise. Average gain and loss are
    Wilder-smoothed (seeded with the mean of the first n changes). RSI = 100 * gain / (gain + loss),
    which is 100 - 100 / (1 + gain/loss) without the division by zero; 50 when both are zero (a flat
    market is neither overbought nor oversold).
    """
    _check_window(n)
    change = _present_diff(_paise_or_nan(bars, field), bars.valid())
    gain = wilder_values(np.where(change > 0, change, np.where(np.isnan(change), np.nan, 0.0)), n)
    loss = wilder_values(np.where(change < 0, -change, np.where(np.isnan(change), np.nan, 0.0)), n)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, 100.0 * gain / total, 50.0)
    out[np.isnan(total)] = np.nan
    return out


def _present_diff(values: F64, valid: B) -> F64:
    """values[t] - values[previous present bar] at present bars; NaN at missing bars and first ones."""
    prev = _previous_present(np.where(valid, values, np.nan))
    return np.where(valid, values - prev, np.nan)


def _previous_present(values: F64) -> F64:
    """For each bar, the last present value strictly before it (NaN if none)."""
    rows = values.shape[0]
    idx = np.where(~np.isnan(values), np.arange(rows)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)
    prev_idx = np.vstack([np.full((1, values.shape[1]), -1), last[:-1]])
    cols = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    out = values[np.maximum(prev_idx, 0), cols]
    out[prev_idx < 0] = np.nan
    return out


def _true_range_paise(bars: Bars) -> F64:
    valid = bars.valid()
    high = bars.paise("high").astype(np.float64)
    low = bars.paise("low").astype(np.float64)
    prev = _previous_present(_paise_or_nan(bars, "close"))
    hl = high - low
    with np.errstate(invalid="ignore"):
        tr = np.where(np.isnan(prev), hl, np.maximum(hl, np.maximum(np.abs(high - prev), np.abs(low - prev))))
    return np.where(valid, tr, np.nan)


def true_range(bars: Bars) -> F64:
    """max(high - low, |high - previous close|, |low - previous close|) in rupees, from exact paise.

    The previous close is the previous PRESENT bar's; a symbol's first bar has high - low. NaN at
    missing bars.
    """
    return _true_range_paise(bars) / 100.0


def atr(bars: Bars, n: int = 14) -> F64:
    """Wilder's average true range in rupees: the first value at a symbol's n-th bar (mean of n TRs)."""
    return wilder_values(_true_range_paise(bars), n) / 100.0


@njit(cache=True)
def _supertrend_kernel(
    high: F64, low: F64, close: F64, atr_: F64, multiplier: float
) -> tuple[F64, F64]:  # pragma: no cover - compiled
    rows, cols = close.shape
    line = np.full((rows, cols), np.nan)
    direction = np.full((rows, cols), np.nan)
    for j in range(cols):
        started = False
        upper = 0.0
        lower = 0.0
        up = False
        prev_close = 0.0
        for t in range(rows):
            c = close[t, j]
            a = atr_[t, j]
            if np.isnan(c) or np.isnan(a):
                continue
            mid = (high[t, j] + low[t, j]) / 2.0
            basic_upper = mid + multiplier * a
            basic_lower = mid - multiplier * a
            if not started:
                upper = basic_upper
                lower = basic_lower
                up = False  # as TradingView's ta.supertrend: the first bar is a down trend
                started = True
            else:
                if basic_upper < upper or prev_close > upper:
                    upper = basic_upper
                if basic_lower > lower or prev_close < lower:
                    lower = basic_lower
                up = c >= lower if up else c > upper
            prev_close = c
            line[t, j] = lower if up else upper
            direction[t, j] = 1.0 if up else -1.0
    return line, direction


def supertrend(bars: Bars, n: int = 10, multiplier: float = 3.0, *, atr_values: F64 | None = None) -> tuple[F64, F64]:
    """(line, direction): Supertrend on Wilder's ATR(n), as TradingView's `ta.supertrend`.

    Basic bands are (high + low) / 2 +- multiplier * ATR. The final upper band only moves down (it takes
    the basic band when that is lower, or when the previous close broke above it), the final lower band
    only moves up (mirror). The trend turns up when the close goes above the final upper band and down
    when it goes below the final lower band; the line is the lower band in an up trend, the upper band
    in a down trend. Direction is +1 up, -1 down, NaN before the ATR exists and at missing bars (the
    state carries over a missing bar).
    """
    _check_window(n)
    if not multiplier > 0:
        raise ValueError(f"multiplier must be positive, got {multiplier}")
    a = np.ascontiguousarray(atr(bars, n) if atr_values is None else atr_values, dtype=np.float64)
    h, lo, c = (np.ascontiguousarray(x, dtype=np.float64) for x in (bars.high, bars.low, bars.close))
    line, direction = _supertrend_kernel(h, lo, c, a, float(multiplier))
    return line, direction


# --- windowed ---------------------------------------------------------------------------------------------


def bollinger_parts(bars: Bars, n: int, field: str = "close") -> tuple[I64, I64, B]:
    """(sum, n^2 * variance, full) of the last n bars of `field` in exact int64 paise (see `bollinger`)."""
    _check_window(n)
    valid = bars.valid()
    x = bars.paise(field)
    s1, full = rolling_sum_int(x, valid, n)
    s2, _ = rolling_sum_int(x * x, valid, n)
    var_n2 = np.where(full, n * s2 - s1 * s1, 0)  # exact n^2 * population variance, paise^2
    return s1, var_n2, full


def bollinger(bars: Bars, n: int = 20, k: float = 2.0, field: str = "close") -> tuple[F64, F64, F64]:
    """(middle, upper, lower) in rupees: the n-bar mean +- k POPULATION standard deviations (ddof 0).

    Population, as Bollinger defines the bands and TA-Lib computes them (pandas' rolling std defaults to
    the sample one, ddof 1: pass ddof=0 to compare). Sums and sums of squares are exact int64 paise, so
    the bands at t are a function of the window's prices alone: n * sum(x^2) - sum(x)^2 is the exact
    n^2 * variance (int64 wraps modulo 2^64 on the way, but the result fits for n <= 1000 and a window
    whose prices span less than 60,000 rupees). NaN unless all n bars are present.
    """
    s1, var_n2, full = bollinger_parts(bars, n, field)
    std = np.sqrt(var_n2.astype(np.float64)) / (100.0 * n)
    nan = np.full(s1.shape, np.nan)
    mid = np.where(full, s1 / (100.0 * n), nan)
    return mid, np.where(full, mid + k * std, nan), np.where(full, mid - k * std, nan)


def _rolling_extreme(values: F64, valid: B, n: int, op: np.ufunc, fill: float) -> F64:
    """op (maximum/minimum) over the last n bars, NaN unless all n are present; O(T log n) by doubling."""
    _check_window(n)
    acc = np.where(valid, values, fill)
    span = 1  # acc[t] = op over the `span` bars ending at t
    while span * 2 <= n:
        acc = op(acc, _shift(acc, span, fill))
        span *= 2
    if span < n:  # the remaining n - span bars: a second, overlapping block
        acc = op(acc, _shift(acc, n - span, fill))
    _, full = rolling_sum_int(np.zeros(valid.shape, dtype=np.int64), valid, n)
    out: F64 = np.where(full, acc, np.nan)
    return out


def rolling_max(values: F64, valid: B, n: int) -> F64:
    """Highest value of the last n bars (this one included); NaN unless all n are present."""
    return _rolling_extreme(values, valid, n, np.maximum, -np.inf)


def rolling_min(values: F64, valid: B, n: int) -> F64:
    """Lowest value of the last n bars (this one included); NaN unless all n are present."""
    return _rolling_extreme(values, valid, n, np.minimum, np.inf)


def donchian(bars: Bars, n: int = 20) -> tuple[F64, F64]:
    """(upper, lower): the highest high and the lowest low of the PREVIOUS n bars (not this one).

    So "close above the upper channel" is a breakout past every high of the last n bars. NaN unless all
    n previous bars are present.
    """
    valid = bars.valid()
    upper = _shift(rolling_max(bars.high, valid, n), 1, np.nan)
    lower = _shift(rolling_min(bars.low, valid, n), 1, np.nan)
    return upper, lower


def _shift(values: F64, rows: int, fill: float) -> F64:
    """values moved `rows` bars later (row t holds row t - rows), `fill` where there is nothing."""
    out = np.full_like(values, fill)
    if rows < len(values):
        out[rows:] = values[: len(values) - rows]
    return out


# --- sessions (intraday) -------------------------------------------------------------------------------------


def session_clock(times: NDArray[np.datetime64]) -> tuple[I64, I64]:
    """(IST calendar day number, IST minute of the day) of each bar's start time."""
    local = times.astype("datetime64[us]").astype(np.int64) + IST_OFFSET_US
    return local // DAY_US, (local % DAY_US) // MINUTE_US


def session_starts(day: I64) -> I64:
    """Row index of the first bar of each bar's session (a new IST date starts a new session)."""
    rows = len(day)
    first = np.ones(rows, dtype=bool)
    first[1:] = day[1:] != day[:-1]
    out: I64 = np.maximum.accumulate(np.where(first, np.arange(rows), 0))
    return out


def opening_range(bars: Bars, minutes: int = 15) -> tuple[F64, F64]:
    """(high, low) of each session's opening range, on the bars from the range's end onward.

    The range is the highest high and lowest low of the bars that start in [09:15, 09:15 + minutes) IST
    of the same date. NaN before the range has ended, on other dates' bars, and for a symbol that lacks
    a bar the session has in that period (or has none there): a range with a hole is no range.
    """
    _check_window(minutes, "minutes")
    day, minute = session_clock(bars.times)
    in_range = (minute >= NSE_OPEN_MINUTE) & (minute < NSE_OPEN_MINUTE + minutes)
    after = minute >= NSE_OPEN_MINUTE + minutes
    rows = len(day)
    if rows == 0:
        empty = np.full(bars.close.shape, np.nan)
        return empty, empty.copy()
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    session = np.cumsum(np.r_[True, day[1:] != day[:-1]]) - 1
    mask = in_range[:, None]
    hi = np.maximum.reduceat(np.where(mask, bars.high, -np.inf), starts, axis=0)  # NaN if a range bar is missing
    lo = np.minimum.reduceat(np.where(mask, bars.low, np.inf), starts, axis=0)
    hi[np.isinf(hi)] = np.nan  # no bar in the range period
    lo[np.isinf(lo)] = np.nan
    known = after[:, None] & np.ones(bars.close.shape, dtype=bool)
    return np.where(known, hi[session], np.nan), np.where(known, lo[session], np.nan)
