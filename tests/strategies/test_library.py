"""The built-in strategies: rules on hand-made bars, the schemas' errors, the shared indicator cache."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

import numpy as np
import pytest
from numpy.typing import NDArray

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import IST, Bars
from apps.strategies.engine.library import armed_regime
from apps.strategies.engine.params import ParamError
from apps.strategies.engine.strategy import REGISTRY, IndicatorCache, UnknownStrategy, get_strategy

F64 = NDArray[np.float64]
BUILT_INS = {
    "sma_crossover",
    "ema_crossover",
    "rsi_reversion",
    "bollinger_breakout",
    "supertrend",
    "donchian_breakout",
    "opening_range_breakout",
}


# --- bar factories (the other strategy test modules use them too) ----------------------------------------


def make_bars(
    close: Sequence[float] | F64,
    *,
    high: Sequence[float] | F64 | None = None,
    low: Sequence[float] | F64 | None = None,
    interval: str = "day",
) -> Bars:
    """Daily bars of one symbol (or (T, N) for several) from closes; high/low default to the close."""
    c = np.asarray(close, dtype=np.float64)
    c = c[:, None] if c.ndim == 1 else c
    h = c if high is None else np.asarray(high, dtype=np.float64).reshape(c.shape)
    lo = c if low is None else np.asarray(low, dtype=np.float64).reshape(c.shape)
    times = (np.datetime64("2024-01-01T00:00") + np.arange(len(c)) * np.timedelta64(1, "D")).astype("datetime64[us]")
    names = tuple(f"S{j}" for j in range(c.shape[1]))
    return Bars(interval, times, names, c.copy(), h.copy(), lo.copy(), c.copy(), np.ones_like(c))


def session_times(days: Sequence[date]) -> NDArray[np.datetime64]:
    """One-minute bar start times 09:15..15:29 IST of these dates, as datetime64[us] UTC."""
    out: list[int] = []
    for day in days:
        first = datetime.combine(day, time(9, 15), tzinfo=IST)
        base = int(first.timestamp() * 1_000_000)
        out.extend(base + k * ind.MINUTE_US for k in range(ind.SESSION_MINUTES))
    return np.array(out, dtype=np.int64).astype("datetime64[us]")


def minute_bars(sessions: int = 5, symbols: int = 4, seed: int = 7) -> Bars:
    """Synthetic one-minute bars: `sessions` weekdays of 375 bars, a seeded random walk in whole paise."""
    days: list[date] = []
    day = date(2024, 3, 4)  # a Monday
    while len(days) < sessions:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    times = session_times(days)
    rng = np.random.default_rng(seed)
    rows = len(times)
    close_p = 250_000 + np.cumsum(rng.integers(-40, 41, size=(rows, symbols)), axis=0)
    open_p = np.vstack([close_p[:1], close_p[:-1]])
    high_p = np.maximum(open_p, close_p) + rng.integers(0, 25, size=(rows, symbols))
    low_p = np.minimum(open_p, close_p) - rng.integers(0, 25, size=(rows, symbols))
    volume = rng.integers(100, 10_000, size=(rows, symbols)).astype(np.float64)
    names = tuple(f"M{j}" for j in range(symbols))
    return Bars("minute", times, names, open_p / 100.0, high_p / 100.0, low_p / 100.0, close_p / 100.0, volume)


def _flat(n: int, price: float = 100.0) -> list[float]:
    return [price] * n


# --- the registry and the schemas ---------------------------------------------------------------------------


def test_every_built_in_is_registered_with_a_usable_schema() -> None:
    get_strategy("sma_crossover")  # imports the library
    assert set(REGISTRY) >= BUILT_INS
    for name in BUILT_INS:
        strategy = get_strategy(name)
        described = strategy.schema.describe()
        assert [p["name"] for p in described["params"]] == list(strategy.params)
        assert strategy.lookback() >= strategy.warmup() + 1, name
        assert strategy.title and strategy.description
    orb = REGISTRY["opening_range_breakout"]
    assert orb.intraday and orb.intervals == ("minute",)
    assert not any(REGISTRY[n].intraday for n in BUILT_INS - {"opening_range_breakout"})


@pytest.mark.parametrize(
    ("name", "raw", "param", "words"),
    [
        ("ema_crossover", {"fast": 26}, "fast", "below slow"),
        ("ema_crossover", {"slow": 5, "fast": 9}, "fast", "below slow"),
        ("ema_crossover", {"fast": -3}, "fast", "at least"),
        ("ema_crossover", {"slwo": 20}, "slwo", "unknown parameter"),
        ("rsi_reversion", {"lower": 55}, "lower", "below exit"),
        ("rsi_reversion", {"upper": 45}, "upper", "above exit"),
        ("rsi_reversion", {"period": 0}, "period", "at least"),
        ("rsi_reversion", {"max_hold": -1}, "max_hold", "at least"),
        ("rsi_reversion", {"lower": 120}, "lower", "at most"),
        ("bollinger_breakout", {"n": -20}, "n", "at least"),
        ("bollinger_breakout", {"k": "wide"}, "k", "a number"),
        ("supertrend", {"period": 0}, "period", "at least"),
        ("supertrend", {"multiplier": -3.0}, "multiplier", "at least"),
        ("donchian_breakout", {"entry": -20}, "entry", "at least"),
        ("donchian_breakout", {"max_hold": 2.5}, "max_hold", "an integer"),
        ("opening_range_breakout", {"squareoff": "3:15 pm"}, "squareoff", "HH:MM"),
        ("opening_range_breakout", {"squareoff": "09:20"}, "squareoff", "after the opening range"),
        ("opening_range_breakout", {"squareoff": "15:45"}, "squareoff", "15:30"),
        ("opening_range_breakout", {"range_minutes": 0}, "range_minutes", "at least"),
        ("opening_range_breakout", {"range_minutes": 360}, "range_minutes", "after the opening range"),
    ],
)
def test_schema_errors_name_the_parameter(name: str, raw: dict[str, object], param: str, words: str) -> None:
    with pytest.raises(ParamError) as bad:
        get_strategy(name, raw)
    assert bad.value.param == param
    assert words in str(bad.value)


def test_unknown_strategy_lists_the_built_ins() -> None:
    with pytest.raises(UnknownStrategy) as bad:
        get_strategy("ema_crosover")
    assert "ema_crossover" in str(bad.value) and "opening_range_breakout" in str(bad.value)


# --- the shared rules --------------------------------------------------------------------------------------


def test_armed_regime_bounds_the_memory_and_lets_an_exit_win() -> None:
    entry = np.zeros((12, 1), dtype=bool)
    exit_ = np.zeros((12, 1), dtype=bool)
    entry[[1, 3], 0] = True  # armed at 1, re-armed at 3
    exit_[9, 0] = True
    entry[9, 0] = True  # an entry and an exit on the same bar: out
    defined = np.ones((12, 1), dtype=bool)
    defined[11, 0] = False
    out = armed_regime(entry, exit_, defined, max_hold=4)[:, 0]
    # long 1..6 (3 + 4 - 1), flat after, flat at 9 (exit wins), NaN where undefined
    expected = [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, np.nan]
    np.testing.assert_array_equal(out, expected)
    short = armed_regime(exit_, entry, defined, max_hold=4, short_entry=entry, short_exit=exit_)[:, 0]
    assert short[4] == -1.0 and short[9] == 0.0  # on bar 9 the exits win on both sides


# --- each strategy on hand-made bars ----------------------------------------------------------------------------


def test_ema_crossover_follows_the_strict_crossover_and_a_flat_market_ties() -> None:
    prices = _flat(30) + [100.0 + k for k in range(1, 11)] + [110.0 - 2 * k for k in range(1, 16)]
    bars = make_bars(prices)
    strategy = get_strategy("ema_crossover", {"fast": 3, "slow": 10})
    out = strategy.targets(bars)[:, 0]
    assert np.isnan(out[:9]).all() and strategy.warmup() == 9
    fast, slow = ind.ema(bars, 3), ind.ema(bars, 10)
    assert (fast[9:30] == slow[9:30]).all()  # flat: the EMAs tie exactly ...
    assert (out[9:30] == 0).all()  # ... and a tie is "not above"
    assert out[30] == 1.0 and (out[30:40] == 1).all()  # the rise: fast above slow at once
    falls_below = 40 + int(np.argmax(fast[40:, 0] <= slow[40:, 0]))
    assert out[falls_below] == 0.0 and out[falls_below - 1] == 1.0 and 40 < falls_below < len(prices)
    both = get_strategy("ema_crossover", {"fast": 3, "slow": 10, "long_short": True}).targets(bars)[:, 0]
    assert both[falls_below] == -1.0 and both[20] == -1.0


def test_rsi_reversion_buys_the_oversold_and_sells_the_recovery() -> None:
    # 20 falling bars (RSI 0), then rising ones: the RSI climbs through 30 and then 50
    prices = [200.0 - 2 * k for k in range(20)] + [162.0 + 3 * k for k in range(1, 16)]
    bars = make_bars(prices)
    strategy = get_strategy("rsi_reversion", {"period": 5, "max_hold": 50})
    out = strategy.targets(bars)[:, 0]
    rsi = ind.rsi(bars, 5)[:, 0]
    assert np.isnan(out[:5]).all() and (rsi[5:20] == 0.0).all()
    assert (out[5:20] == 1.0).all()  # oversold from the first RSI on
    first_above_exit = int(np.argmax(rsi > 50.0))
    assert first_above_exit > 20
    assert (out[20:first_above_exit] == 1.0).all() and (out[first_above_exit:] == 0.0).all()
    # a short max_hold ends the position that many bars after the last oversold bar
    last_oversold = int(np.flatnonzero(rsi < 30.0)[-1])
    assert last_oversold + 1 < first_above_exit and out[last_oversold + 1] == 1.0
    held = get_strategy("rsi_reversion", {"period": 5, "max_hold": 1}).targets(bars)[:, 0]
    assert held[last_oversold] == 1.0 and held[last_oversold + 1] == 0.0
    # short mirror: rising prices overbought
    up = make_bars([100.0 + 2 * k for k in range(20)] + [138.0 - 3 * k for k in range(1, 10)])
    short = get_strategy("rsi_reversion", {"period": 5, "max_hold": 50, "long_short": True}).targets(up)[:, 0]
    rsi_up = ind.rsi(up, 5)[:, 0]
    back_below_exit = int(np.argmax(rsi_up < 50.0))
    assert back_below_exit > 20 and (short[5:back_below_exit] == -1.0).all() and short[back_below_exit] == 0.0
    assert rsi_up[-1] < 30.0 and short[-1] == 1.0  # the fall went on into oversold: long


def test_bollinger_breakout_enters_above_the_band_and_exits_below_the_middle() -> None:
    # 20 bars at 100, then 110s: the 1st, 2nd and 3rd 110 close above the upper band (20 bars, 2 sd);
    # the 4th ties it EXACTLY (mean 102 + 2 * 4 = 110) and a tie is no breakout. Then a drop to 90.
    prices = _flat(20) + [110.0] * 8 + [90.0] + [100.0] * 3
    bars = make_bars(prices)
    mid, upper, _ = ind.bollinger(bars, 20, 2.0)
    assert upper[23, 0] == 110.0 and mid[23, 0] == 102.0
    out = get_strategy("bollinger_breakout", {"max_hold": 100}).targets(bars)[:, 0]
    assert np.isnan(out[:19]).all() and out[19] == 0.0
    assert (out[20:28] == 1.0).all() and out[28] == 0.0 and (out[29:] == 0.0).all()
    timed = get_strategy("bollinger_breakout", {"max_hold": 5}).targets(bars)[:, 0]
    # last breakout at bar 22: held through 22 + 5 - 1 = 26 (the exact tie at 23 does not re-arm)
    assert (timed[20:27] == 1.0).all() and timed[27] == 0.0
    down = make_bars(_flat(20) + [90.0] * 3 + [105.0])
    short = get_strategy("bollinger_breakout", {"long_short": True}).targets(down)[:, 0]
    assert (short[20:23] == -1.0).all() and short[23] == 0.0  # back above the middle: out


def test_supertrend_follows_the_trend() -> None:
    up = [100.0 + k for k in range(40)]
    down = [139.0 - 1.5 * k for k in range(1, 41)]
    prices = np.array(up + down)
    bars = make_bars(prices, high=prices + 0.5, low=prices - 0.5)
    out = get_strategy("supertrend", {"period": 5, "multiplier": 2.0}).targets(bars)[:, 0]
    _, direction = ind.supertrend(bars, 5, 2.0)
    assert np.isnan(out[:4]).all() and out[4] == 0.0  # the first bar of the ATR starts as a down trend
    turned_up, turned_down = int(np.argmax(direction[:, 0] > 0)), 40 + int(np.argmax(direction[40:, 0] < 0))
    assert 4 < turned_up < 15 and 40 < turned_down < 50
    assert (out[turned_up:40] == 1.0).all() and (out[turned_down:] == 0.0).all()
    both = get_strategy("supertrend", {"period": 5, "multiplier": 2.0, "long_short": True}).targets(bars)[:, 0]
    assert (both[turned_down:] == -1.0).all() and both[4] == -1.0


def test_donchian_breakout_enters_past_the_previous_high_and_exits_past_the_low() -> None:
    prices = _flat(25) + [101.0] * 5 + [99.0] + _flat(5, 99.0)
    bars = make_bars(prices)
    out = get_strategy("donchian_breakout", {"entry": 20, "exit": 10}).targets(bars)[:, 0]
    assert np.isnan(out[:20]).all() and (out[20:25] == 0.0).all()  # 100 is not above a 100 high
    assert (out[25:30] == 1.0).all()  # 101 > 100; later 101s are not above 101, but the entry stays armed
    assert out[30] == 0.0  # 99 < the previous 10 bars' low (100)
    timed = get_strategy("donchian_breakout", {"entry": 20, "exit": 10, "max_hold": 3}).targets(bars)[:, 0]
    assert (timed[25:28] == 1.0).all() and timed[28] == 0.0
    both = get_strategy("donchian_breakout", {"long_short": True}).targets(bars)[:, 0]
    assert (both[25:30] == 1.0).all() and both[30] == -1.0  # 99: out of the long, below the 20-bar low (100)
    assert (both[31:] == -1.0).all()  # 99s never close above the previous 10 bars' high (101)


def test_opening_range_breakout_by_session() -> None:
    times = session_times([date(2024, 3, 4), date(2024, 3, 5)])
    rows = len(times)
    close = np.full(rows, 100.0)
    high, low = close + 0.5, close - 0.5  # the range: 99.5 .. 100.5
    day2 = ind.SESSION_MINUTES
    close[30] = 101.0  # 09:45 day 1: above the range's high -> long
    close[100] = 100.0  # back inside the range: still long (the breakout's memory lasts the session)
    close[200] = 99.0  # 12:35: below the low -> out (long only) / short
    close[250:375] = 101.0  # long again until the square-off
    close[day2 + 5] = 102.0  # inside day 2's range period: no trade
    close[day2 + 40] = 98.0  # day 2, 09:55: short
    high = np.maximum(high, close)
    low = np.minimum(low, close)
    bars = Bars("minute", times, ("X",), close[:, None], high[:, None], low[:, None], close[:, None], close[:, None])
    out = get_strategy("opening_range_breakout").targets(bars)[:, 0]
    square = (15 * 60 + 14) - ind.NSE_OPEN_MINUTE  # the 15:14 bar ends at 15:15
    assert (out[:30] == 0).all() and (out[30:200] == 1).all() and (out[200:250] == 0).all()
    assert (out[250:square] == 1).all() and (out[square:day2] == 0).all()
    assert (out[day2:] == 0).all()  # long-only: day 2's breakdown stays flat; nothing carried overnight
    both = get_strategy("opening_range_breakout", {"long_short": True, "squareoff": "15:00"}).targets(bars)[:, 0]
    assert (both[200:250] == -1).all() and (both[day2 + 40 : day2 + 344] == -1).all() and both[day2 + 344] == 0
    assert both[day2 + 39] == 0 and (both[day2 : day2 + 15] == 0).all()
    close[50] = np.nan  # a missing bar: no opinion there, the session goes on
    bars = Bars("minute", times, ("X",), close[:, None], high[:, None], low[:, None], close[:, None], close[:, None])
    out = get_strategy("opening_range_breakout").targets(bars)[:, 0]
    assert np.isnan(out[50]) and out[51] == 1.0


# --- the cache and the inputs -------------------------------------------------------------------------------------


def test_a_grid_computes_each_indicator_once(daily_bars: Bars) -> None:
    cache = IndicatorCache(daily_bars)
    schema = REGISTRY["ema_crossover"].schema
    grid = schema.grid({"fast": [5, 10, 15], "slow": [20, 30, 40]})
    for params in grid:
        get_strategy("ema_crossover", params).targets(daily_bars, cache)
    assert cache.misses == 6 and len(cache) == 6 and cache.hits == 2 * len(grid) - 6
    fresh = get_strategy("ema_crossover", {"fast": 5, "slow": 30}).targets(daily_bars)
    again = get_strategy("ema_crossover", {"fast": 5, "slow": 30}).targets(daily_bars, cache)
    np.testing.assert_array_equal(fresh, again)
    other = IndicatorCache(daily_bars.tail(100))  # a cache of other bars is never used
    np.testing.assert_array_equal(
        get_strategy("ema_crossover").targets(daily_bars, other), get_strategy("ema_crossover").targets(daily_bars)
    )
    assert len(other) == 0


def test_inputs_are_named_arrays_of_the_bars_shape(daily_bars: Bars) -> None:
    bars = daily_bars.tail(700)
    for name in sorted(BUILT_INS - {"opening_range_breakout"}):
        strategy = get_strategy(name)
        cache = IndicatorCache(bars)
        inputs = strategy.inputs(bars, cache)
        assert inputs, name
        for key, values in inputs.items():
            assert isinstance(key, str) and values.shape == bars.close.shape, (name, key)
            assert np.isfinite(values[-1, :]).sum() >= 45, (name, key)  # JIOFIN/ETERNAL aside, values at the end
    assert set(get_strategy("rsi_reversion").inputs(bars)) == {"rsi_14"}
    assert set(get_strategy("ema_crossover").inputs(bars)) == {"ema_12", "ema_26"}
    minutes = minute_bars(sessions=2, symbols=2)
    orb = get_strategy("opening_range_breakout").inputs(minutes)
    assert set(orb) == {"range_high", "range_low"} and np.isfinite(orb["range_high"][-1]).all()
