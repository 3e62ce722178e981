"""Indicators against plain-Python loops, hand-computed values and pandas, on small arrays and real stocks."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from numpy.typing import NDArray

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import Bars
from tests.strategies.test_library import make_bars, minute_bars, session_times

F64 = NDArray[np.float64]
NAN = math.nan


def _with_holes(bars: Bars, rows: list[int], col: int) -> Bars:
    """A copy of `bars` where symbol `col` has no bar at `rows` (a suspended day)."""
    fields = {f: getattr(bars, f).copy() for f in ("open", "high", "low", "close", "volume")}
    for f in fields.values():
        f[rows, col] = np.nan
    return Bars(bars.interval, bars.times, bars.symbols, **fields)


@pytest.fixture(scope="module")
def real(daily_bars: Bars) -> Bars:
    """Five real stocks (JIOFIN lists late: NaN before) with two suspended days punched into RELIANCE."""
    bars = daily_bars.select(["RELIANCE", "TCS", "JIOFIN", "MARUTI", "ITC"])
    return _with_holes(bars, [300, 301, 640], 0)


# --- plain-Python references ------------------------------------------------------------------------------


def ref_smooth(x: list[float], n: int, alpha: float) -> list[float]:
    out, seen, acc, state = [NAN] * len(x), 0, 0.0, 0.0
    for t, v in enumerate(x):
        if math.isnan(v):
            continue
        if seen < n:
            seen += 1
            acc += v
            if seen == n:
                state = acc / n
                out[t] = state
        else:
            state += alpha * (v - state)
            out[t] = state
    return out


def ref_rsi(close_paise: list[float], n: int) -> list[float]:
    out, prev = [NAN] * len(close_paise), NAN
    gains: list[float] = []
    losses: list[float] = []
    g_state = l_state = 0.0
    for t, c in enumerate(close_paise):
        if math.isnan(c):
            continue
        if not math.isnan(prev):
            d = c - prev
            g, lo = max(d, 0.0), max(-d, 0.0)
            if len(gains) < n:
                gains.append(g)
                losses.append(lo)
                if len(gains) == n:
                    g_state, l_state = sum(gains) / n, sum(losses) / n
            else:
                g_state += (g - g_state) / n
                l_state += (lo - l_state) / n
            if len(gains) == n:
                out[t] = 50.0 if g_state + l_state == 0 else 100.0 * g_state / (g_state + l_state)
        prev = c
    return out


def ref_true_range_paise(
    high: NDArray[np.int64], low: NDArray[np.int64], close: NDArray[np.int64], valid: NDArray[np.bool_]
) -> list[float]:
    out: list[float] = [NAN] * len(close)
    prev: int | None = None
    for t in range(len(close)):
        if not valid[t]:
            continue
        h, lo = int(high[t]), int(low[t])
        out[t] = float(h - lo if prev is None else max(h - lo, abs(h - prev), abs(lo - prev)))
        prev = int(close[t])
    return out


def ref_supertrend(high: F64, low: F64, close: F64, atr: F64, mult: float) -> list[float]:
    """TradingView's ta.supertrend, spelled out: +1 up, -1 down."""
    out: list[float] = [NAN] * len(close)
    upper = lower = prev_close = NAN
    trend = 0
    for t in range(len(close)):
        if math.isnan(close[t]) or math.isnan(atr[t]):
            continue
        mid = (high[t] + low[t]) / 2
        bu, bl = mid + mult * atr[t], mid - mult * atr[t]
        if trend == 0:
            upper, lower, trend = bu, bl, -1
        else:
            upper = bu if (bu < upper or prev_close > upper) else upper
            lower = bl if (bl > lower or prev_close < lower) else lower
            trend = (1 if close[t] > upper else -1) if trend == -1 else (-1 if close[t] < lower else 1)
        prev_close = close[t]
        out[t] = float(trend)
    return out


# --- EMA and Wilder smoothing --------------------------------------------------------------------------------


def test_ema_is_seeded_with_the_sma_and_skips_missing_bars() -> None:
    x = np.array([1.0, 2.0, 3.0, NAN, 7.0, 5.0, NAN])
    out = ind.ema_values(x, 3)
    # seed at the 3rd value: (1+2+3)/3 = 2; alpha = 0.5: 2 + 0.5*(7-2) = 4.5; 4.5 + 0.5*(5-4.5) = 4.75
    np.testing.assert_array_equal(out, [NAN, NAN, 2.0, NAN, 4.5, 4.75, NAN])
    wild = ind.wilder_values(np.array([NAN, 3.0, 6.0, 0.0]), 2)  # alpha 1/2 too, from the 2nd present value
    np.testing.assert_array_equal(wild, [NAN, NAN, 4.5, 2.25])
    np.testing.assert_array_equal(ind.ema_values(np.array([5.0, 5.0]), 3), [NAN, NAN])
    with pytest.raises(ValueError, match="window"):
        ind.ema_values(x, 0)


def test_ema_on_real_stocks_matches_a_loop_and_pandas(real: Bars) -> None:
    for n in (5, 26):
        out = ind.ema(real, n)
        for j in range(real.n_symbols):
            paise = np.where(real.valid()[:, j], real.paise()[:, j], np.nan)
            expected = np.array(ref_smooth(list(paise), n, 2 / (n + 1))) / 100
            np.testing.assert_array_equal(out[:, j], expected)
        # pandas' recursive EWM from our seed on (missing bars dropped) is the same average
        col = out[:, 0]
        present = ~np.isnan(real.close[:, 0])
        seed_at = int(np.flatnonzero(present)[n - 1])
        rest = real.close[seed_at:, 0][present[seed_at:]]
        series = pd.Series(np.r_[col[seed_at], rest[1:]])
        theirs = series.ewm(alpha=2 / (n + 1), adjust=False).mean().to_numpy()
        np.testing.assert_allclose(col[seed_at:][present[seed_at:]], theirs, rtol=1e-12)
    assert np.isnan(ind.ema(real, 5)[[300, 301, 640], 0]).all()
    listed = int(np.flatnonzero(real.valid()[:, 2])[0])  # JIOFIN: seeded on its own first 5 bars
    jio = ind.ema(real, 5)[:, 2]
    assert (
        listed > 600
        and np.isnan(jio[: listed + 4]).all()
        and jio[listed + 4] == pytest.approx(np.mean(real.close[listed : listed + 5, 2]), rel=1e-14)
    )


def test_settle_bars_leaves_a_seed_weight_below_float_resolution() -> None:
    for alpha in (2 / 13, 2 / 27, 1 / 14, 1 / 200, 0.9):
        k = ind.settle_bars(alpha)
        assert (1 - alpha) ** k <= math.exp(-40) < 2**-53
        assert (1 - alpha) ** (k - 1) > math.exp(-40)
    assert ind.settle_bars(1.0) == 1
    with pytest.raises(ValueError, match="alpha"):
        ind.settle_bars(0.0)


# --- RSI ---------------------------------------------------------------------------------------------------------


def test_rsi_by_hand_and_at_the_extremes() -> None:
    out = ind.rsi(make_bars([10.0, 11.0, 10.5, 11.5]), 2)[:, 0]
    # changes +1, -0.5, +1; seed gain 0.5, loss 0.25 -> 66.67; then gain 0.75, loss 0.125 -> 85.71
    np.testing.assert_allclose(out, [NAN, NAN, 100 * 0.5 / 0.75, 100 * 0.75 / 0.875], rtol=1e-14)
    rising = ind.rsi(make_bars([100.0 + k for k in range(20)]), 14)[:, 0]
    falling = ind.rsi(make_bars([100.0 - k for k in range(20)]), 14)[:, 0]
    flat = ind.rsi(make_bars([100.0] * 20), 14)[:, 0]
    assert np.isnan(rising[:14]).all() and (rising[14:] == 100).all()
    assert (falling[14:] == 0).all() and (flat[14:] == 50).all()


def test_rsi_on_real_stocks_matches_a_loop(real: Bars) -> None:
    for n in (2, 14):
        out = ind.rsi(real, n)
        for j in range(real.n_symbols):
            paise = np.where(real.valid()[:, j], real.paise()[:, j], np.nan)
            np.testing.assert_allclose(out[:, j], ref_rsi(list(paise), n), rtol=1e-12, atol=1e-12)
        assert np.nanmin(out) >= 0 and np.nanmax(out) <= 100
    assert np.isnan(ind.rsi(real, 14)[[300, 301], 0]).all() and not np.isnan(ind.rsi(real, 14)[302, 0])


# --- true range, ATR, Supertrend ------------------------------------------------------------------------------------


def test_true_range_and_atr_by_hand() -> None:
    bars = make_bars([10.0, 11.0, 11.0, 14.5], high=[11.0, 12.0, 11.5, 15.0], low=[9.0, 10.0, 10.5, 14.0])
    tr = ind.true_range(bars)[:, 0]
    # first bar: high - low; then max(h - l, |h - prev c|, |l - prev c|); a gap up from 11 to 14-15: 4
    np.testing.assert_array_equal(tr, [2.0, 2.0, 1.0, 4.0])
    np.testing.assert_array_equal(ind.atr(bars, 2)[:, 0], [NAN, 2.0, 1.5, 2.75])


def test_atr_and_supertrend_on_real_stocks_match_loops(real: Bars) -> None:
    for n, mult in ((10, 3.0), (7, 1.5)):
        atr = ind.atr(real, n)
        line, direction = ind.supertrend(real, n, mult)
        for j in range(real.n_symbols):
            valid = real.valid()[:, j]
            tr = ref_true_range_paise(real.paise("high")[:, j], real.paise("low")[:, j], real.paise()[:, j], valid)
            np.testing.assert_allclose(atr[:, j], np.array(ref_smooth(list(tr), n, 1 / n)) / 100, rtol=1e-12)
            expected = ref_supertrend(real.high[:, j], real.low[:, j], real.close[:, j], atr[:, j], mult)
            np.testing.assert_array_equal(direction[:, j], expected)
        up = direction > 0
        with np.errstate(invalid="ignore"):
            assert (real.close[up] >= line[up]).all()  # in an up trend the close is above the line
            assert (real.close[direction < 0] <= line[direction < 0]).all()
        assert 10 < np.nansum(np.abs(np.diff(direction, axis=0)) > 0) < real.n_times * real.n_symbols / 5
    with pytest.raises(ValueError, match="multiplier"):
        ind.supertrend(real, 10, 0.0)


# --- windowed: Bollinger, rolling extremes, Donchian ----------------------------------------------------------


def test_bollinger_uses_the_population_deviation(real: Bars) -> None:
    mid, upper, lower = ind.bollinger(real, 20, 2.0)
    for j in range(real.n_symbols):
        close = pd.Series(real.close[:, j])
        rolling = close.rolling(20)  # NaN in the window -> NaN, our missing-bar rule
        np.testing.assert_allclose(mid[:, j], rolling.mean(), rtol=1e-12)
        np.testing.assert_allclose(upper[:, j], rolling.mean() + 2 * rolling.std(ddof=0), rtol=1e-9)
        np.testing.assert_allclose(lower[:, j], rolling.mean() - 2 * rolling.std(ddof=0), rtol=1e-9)
    hand_mid, hand_upper, hand_lower = ind.bollinger(make_bars([1.0, 2.0, 3.0, 4.0]), 4, 1.0)
    sd = math.sqrt(1.25)  # population: mean 2.5, squared deviations 2.25, 0.25, 0.25, 2.25 over 4
    assert hand_mid[3, 0] == 2.5 and hand_upper[3, 0] == pytest.approx(2.5 + sd, abs=1e-12)
    assert hand_lower[3, 0] == pytest.approx(2.5 - sd, abs=1e-12) and np.isnan(hand_mid[2, 0])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 20, 31, 55])
def test_rolling_extremes_match_windows(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.normal(size=(120, 3))
    valid = rng.random((120, 3)) > 0.03
    high, low = ind.rolling_max(values, valid, n), ind.rolling_min(values, valid, n)
    for t in range(120):
        for j in range(3):
            window = slice(t - n + 1, t + 1)
            if t < n - 1 or not valid[window, j].all():
                assert np.isnan(high[t, j]) and np.isnan(low[t, j])
            else:
                assert high[t, j] == values[window, j].max() and low[t, j] == values[window, j].min()


def test_donchian_is_the_previous_n_bars(real: Bars) -> None:
    upper, lower = ind.donchian(real, 20)
    for j in range(real.n_symbols):
        for t in range(real.n_times):
            window = slice(t - 20, t)
            if t < 20 or not real.valid()[window, j].all():
                assert np.isnan(upper[t, j]), (t, j)
            else:
                assert upper[t, j] == real.high[window, j].max() and lower[t, j] == real.low[window, j].min()
    assert np.isnan(upper[301:321, 0]).all() and not np.isnan(upper[322, 0])  # holes at 300 and 301


# --- sessions -------------------------------------------------------------------------------------------------


def test_session_clock_reads_ist() -> None:
    times = session_times([date(2024, 3, 4)])
    day, minute = ind.session_clock(times[[0, 374]])
    assert list(minute) == [9 * 60 + 15, 15 * 60 + 29] and day[0] == day[1]
    starts = ind.session_starts(np.array([5, 5, 6, 6, 6, 9]))
    np.testing.assert_array_equal(starts, [0, 0, 2, 2, 2, 5])


def test_opening_range_matches_a_loop_per_session() -> None:
    bars = _with_holes(minute_bars(sessions=4, symbols=3, seed=11), [375 + 7], 1)  # symbol 1 lacks 09:22 on day 2
    for minutes in (1, 15, 30):
        high, low = ind.opening_range(bars, minutes)
        for d in range(4):
            rows = slice(d * 375, (d + 1) * 375)
            for j in range(3):
                h, lo = high[rows, j], low[rows, j]
                assert np.isnan(h[:minutes]).all()
                if j == 1 and d == 1 and minutes > 7:
                    assert np.isnan(h).all()  # a range with a hole is no range
                    continue
                first = slice(d * 375, d * 375 + minutes)
                assert (h[minutes:] == bars.high[first, j].max()).all()
                assert (lo[minutes:] == bars.low[first, j].min()).all()
    daily_high, _ = ind.opening_range(make_bars([1.0, 2.0]), 15)
    assert np.isnan(daily_high).all()  # daily bars start at 00:00 IST: no session range
