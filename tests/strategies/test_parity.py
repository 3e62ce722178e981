"""Live == backtest: the target live evaluation computes from the last `lookback()` bars is the backtest's.

For every built-in strategy, with its defaults and one other parameter set, on the shared daily data
(all 50 stocks; JIOFIN and ETERNAL list late) and, for the intraday opening-range breakout, on
synthetic one-minute sessions: for EVERY bar t from lookback() - 1 on,

    strategy.targets(bars.slice(t - L + 1, t + 1))[-1] == strategy.targets(bars)[t]   (NaN == NaN)

for all symbols, bit for bit. The indicator values behind them (`inputs()`, stored on live signals)
agree too: exactly for windowed indicators, to float rounding for recursive ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from apps.strategies.engine.bars import Bars
from apps.strategies.engine.strategy import REGISTRY, Strategy, get_strategy
from tests.strategies.test_library import minute_bars

DAILY: dict[str, list[dict[str, Any]]] = {
    "sma_crossover": [{}, {"fast": 5, "slow": 20, "field": "high", "long_short": True}],
    "ema_crossover": [{}, {"fast": 5, "slow": 20, "long_short": True}],
    "rsi_reversion": [{}, {"period": 7, "lower": 25, "upper": 75, "exit": 45, "max_hold": 10, "long_short": True}],
    "bollinger_breakout": [{}, {"n": 10, "k": 1.5, "max_hold": 15, "long_short": True}],
    "supertrend": [{}, {"period": 7, "multiplier": 2.0, "long_short": True}],
    "donchian_breakout": [{}, {"entry": 55, "exit": 20, "max_hold": 100, "long_short": True}],
}
MINUTE: dict[str, list[dict[str, Any]]] = {
    "opening_range_breakout": [{}, {"range_minutes": 30, "squareoff": "14:50", "long_short": True}],
}
RECURSIVE = {"ema_crossover", "rsi_reversion", "supertrend"}  # inputs agree to rounding, not bit for bit
MIN_BARS_CHECKED = 300


def _cases(table: dict[str, list[dict[str, Any]]]) -> list[Any]:
    return [
        pytest.param(name, params, id=f"{name}-{'defaults' if not params else 'other'}")
        for name, ps in table.items()
        for params in ps
    ]


def live_rows(strategy: Strategy, bars: Bars, window: int, rows: range) -> NDArray[np.float64]:
    """What live evaluation would say at each of `rows`: the last target of the trailing `window` bars."""
    return np.array([strategy.targets(bars.slice(t - window + 1, t + 1))[-1] for t in rows])


def assert_parity(strategy: Strategy, bars: Bars) -> None:
    lookback = strategy.lookback()
    rows = range(lookback - 1, bars.n_times)
    assert len(rows) >= MIN_BARS_CHECKED, f"{strategy!r}: lookback {lookback} leaves only {len(rows)} bars to check"
    full = strategy.targets(bars)
    live = live_rows(strategy, bars, lookback, rows)
    same = (live == full[lookback - 1 :]) | (np.isnan(live) & np.isnan(full[lookback - 1 :]))
    bad = np.argwhere(~same)
    assert not len(bad), f"{strategy!r}: {len(bad)} live targets differ, first at " + ", ".join(
        f"bar {rows[i]} {bars.symbols[j]} (live {live[i, j]}, backtest {full[rows[i], j]})" for i, j in bad[:5]
    )
    # not a vacuous pass: the checked stretch holds positions, changes and (at missing bars) NaN alike
    checked = full[lookback - 1 :]
    assert np.count_nonzero(np.abs(np.diff(checked, axis=0)) > 0) >= 20, f"{strategy!r}: hardly any changes"
    assert np.count_nonzero(checked != 0) > 0


def assert_inputs_agree(strategy: Strategy, bars: Bars, stride: int = 7) -> None:
    lookback = strategy.lookback()
    full = strategy.inputs(bars)
    for t in range(lookback - 1, bars.n_times, stride):
        window = strategy.inputs(bars.slice(t - lookback + 1, t + 1))
        assert window.keys() == full.keys()
        for key, values in window.items():
            if strategy.name in RECURSIVE:
                np.testing.assert_allclose(values[-1], full[key][t], rtol=1e-9, err_msg=f"{strategy!r} {key} bar {t}")
            else:
                np.testing.assert_array_equal(values[-1], full[key][t], err_msg=f"{strategy!r} {key} bar {t}")


@pytest.fixture(scope="module")
def minutes() -> Bars:
    """Six synthetic sessions of four symbols; one lists on day 2, another misses a few minutes."""
    bars = minute_bars(sessions=6, symbols=4, seed=2024)
    fields = {f: getattr(bars, f).copy() for f in ("open", "high", "low", "close", "volume")}
    for values in fields.values():
        values[:375, 3] = np.nan  # lists on the second day
        values[[380, 1200, 1201, 1500], 1] = np.nan  # a range minute (09:20, day 2) and a few later ones
    return Bars(bars.interval, bars.times, bars.symbols, **fields)


def test_every_built_in_has_parity_cases() -> None:
    get_strategy("sma_crossover")  # registers the library
    built_in = {name for name, cls in REGISTRY.items() if cls.__module__.startswith("apps.strategies.engine.library")}
    assert built_in == set(DAILY) | set(MINUTE)


@pytest.mark.parametrize(("name", "params"), _cases(DAILY))
def test_live_targets_equal_backtest_targets_on_daily_bars(daily_bars: Bars, name: str, params: dict[str, Any]) -> None:
    strategy = get_strategy(name, params)
    assert_parity(strategy, daily_bars)
    assert_inputs_agree(strategy, daily_bars)


@pytest.mark.parametrize(("name", "params"), _cases(MINUTE))
def test_live_targets_equal_backtest_targets_on_minute_bars(minutes: Bars, name: str, params: dict[str, Any]) -> None:
    strategy = get_strategy(name, params)
    assert_parity(strategy, minutes)
    assert_inputs_agree(strategy, minutes, stride=3)
    targets = strategy.targets(minutes)
    assert np.isnan(targets[:375, 3]).all() and np.isnan(targets[[380, 1200], 1]).all()
    assert (targets[np.r_[375:380, 381:750], 1] == 0).all()  # day 2's range has a hole: no trade that day


@pytest.mark.parametrize("name", sorted(set(DAILY) | set(MINUTE)))
def test_a_window_shorter_than_the_lookback_does_disagree(daily_bars: Bars, minutes: Bars, name: str) -> None:
    """The check above can fail: with only the warm-up's bars, live would see other targets."""
    strategy = get_strategy(name)
    short = strategy.warmup() + 1
    if short >= strategy.lookback():
        assert name == "sma_crossover"  # a plain moving-average window needs nothing more
        return
    bars = minutes if name in MINUTE else daily_bars
    rows = range(strategy.lookback() - 1, bars.n_times, 3)
    live = live_rows(strategy, bars, short, rows)
    full = strategy.targets(bars)[list(rows)]
    differ = ~((live == full) | (np.isnan(live) & np.isnan(full)))
    assert differ.any()
