"""The backtest engine on small hand-made bars, where every fill, size and rupee can be worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pytest

from apps.strategies.engine.backtest import BacktestResult, Settings, SettingsError, run_backtest, run_grid
from apps.strategies.engine.bars import IST, Bars
from apps.strategies.engine.kernel import ALL_IN
from apps.strategies.engine.metrics import compute_metrics, periods_per_year
from apps.strategies.engine.params import ParamSchema
from apps.strategies.engine.strategy import IndicatorCache, Strategy, get_strategy

NAN = math.nan
START = np.datetime64("2024-01-01T00:00", "us") - np.timedelta64(330, "m")  # midnight IST, in UTC


class Given(Strategy):
    """Targets handed in by the test."""

    name = "given"
    title = "given targets"
    schema = ParamSchema()

    def __init__(self, targets: Sequence[Sequence[float]] | np.ndarray) -> None:
        super().__init__({})
        self._targets = np.array(targets, dtype=float)

    def warmup(self) -> int:
        return 0

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> np.ndarray:
        return self._targets


def make_bars(
    opens: Sequence[Sequence[float]],
    closes: Sequence[Sequence[float]] | None = None,
    highs: Sequence[Sequence[float]] | None = None,
    lows: Sequence[Sequence[float]] | None = None,
    symbols: Sequence[str] = ("AAA",),
) -> Bars:
    o = np.array(opens, dtype=float)
    c = np.array(closes, dtype=float) if closes is not None else o.copy()
    h = np.array(highs, dtype=float) if highs is not None else np.fmax(o, c)
    lo = np.array(lows, dtype=float) if lows is not None else np.fmin(o, c)
    times = START + np.arange(len(o)) * np.timedelta64(1, "D")
    return Bars("day", times, tuple(symbols), o, h, lo, c, np.where(np.isnan(c), np.nan, 1000.0))


def col(values: Sequence[float]) -> list[list[float]]:
    return [[v] for v in values]


def day(t: int) -> datetime:
    return datetime(2024, 1, 1 + t, tzinfo=IST)


def run(targets: Any, bars: Bars, **settings: Any) -> BacktestResult:
    settings.setdefault("costs", False)
    settings.setdefault("cash", 10_000.0)
    return run_backtest(Given(targets), bars, Settings(**settings))


OPENS = [100.0, 101.0, 102.0, 104.0, 103.0, 105.0, 106.0, 107.0]
CLOSES = [100.5, 101.5, 103.0, 104.5, 102.5, 105.5, 106.5, 107.5]


def test_next_open_fills_the_bar_after_the_change() -> None:
    bars = make_bars(col(OPENS), col(CLOSES))
    result = run(col([0, 0, 1, 1, 0, 0, 0, 0]), bars)
    (trade,) = result.trades
    qty = int((10_000 * ALL_IN) // 104.0)  # entered at bar 3's open, all in
    assert (trade.entry_time, trade.exit_time) == (day(3), day(5))
    assert (trade.quantity, trade.entry_price, trade.exit_price) == (qty, 104.0, 105.0)
    assert trade.pnl == pytest.approx(qty * 1.0) and trade.exit_reason == "signal"
    assert result.equity[-1] == pytest.approx(10_000 + qty * 1.0, abs=1e-9)
    # marked at each close while held: bar 3 close 104.5, bar 4 close 102.5
    assert result.equity[3] == pytest.approx(10_000 + qty * 0.5) and result.equity[4] == pytest.approx(
        10_000 - qty * 1.5
    )


def test_close_fills_at_the_signal_bar() -> None:
    bars = make_bars(col(OPENS), col(CLOSES))
    result = run(col([0, 0, 1, 1, 0, 0, 0, 0]), bars, fill="close")
    (trade,) = result.trades
    qty = int((10_000 * ALL_IN) // 103.0)
    assert (trade.entry_time, trade.exit_time, trade.quantity) == (day(2), day(4), qty)
    assert (trade.entry_price, trade.exit_price) == (103.0, 102.5)


def test_the_first_target_is_not_entered() -> None:
    """A regime already under way when the strategy starts is not bought half-way (backtesting.py's crossover)."""
    bars = make_bars(col(OPENS), col(CLOSES))
    result = run(col([NAN, 1, 1, 1, 0, 0, 1, 1]), bars)
    (trade,) = result.trades  # only the change at bar 6 opens a trade; the 1 -> 0 change closes nothing
    assert trade.entry_time == day(7) and trade.exit_reason == "open"


def test_short_and_reversal() -> None:
    bars = make_bars(col(OPENS), col(CLOSES))
    short = run(col([0, -1, -1, 0, 0, 0, 0, 0]), bars)
    (trade,) = short.trades
    qty = int((10_000 * ALL_IN) // 102.0)
    assert (trade.quantity, trade.entry_price, trade.exit_price) == (-qty, 102.0, 103.0)
    assert trade.pnl == pytest.approx(-qty * 1.0)
    assert short.equity[-1] == pytest.approx(10_000 - qty)

    flip = run(col([0, 1, 1, -1, -1, -1, 0, 0]), bars)
    long, short_leg = flip.trades
    q1 = int((10_000 * ALL_IN) // 102.0)
    cash = 10_000 + q1 * (103.0 - 102.0)  # the long closes at bar 4's open, then the short is sized from that
    q2 = int((cash * ALL_IN) // 103.0)
    assert (long.quantity, long.exit_time, long.exit_price) == (q1, day(4), 103.0)
    assert (short_leg.quantity, short_leg.entry_time, short_leg.entry_price) == (-q2, day(4), 103.0)
    assert (short_leg.exit_time, short_leg.exit_price) == (day(7), 107.0)
    assert flip.equity[-1] == pytest.approx(cash - q2 * 4.0)


STOP_OPEN = [100.0, 100.0, 100.0, 99.0, 98.0, 97.0]


def test_stop_loss_fills_at_the_level_and_not_on_the_entry_bar() -> None:
    lows = [99.0, 99.0, 90.0, 96.0, 94.0, 96.0]  # bar 2 (the entry bar) dips below the stop: not checked
    bars = make_bars(col(STOP_OPEN), col(STOP_OPEN), col([101.0] * 6), col(lows))
    result = run(col([0, 1, 1, 1, 1, 1]), bars, stop_loss=0.05)
    (trade,) = result.trades
    assert (trade.entry_time, trade.entry_price) == (day(2), 100.0)
    assert (trade.exit_time, trade.exit_price, trade.exit_reason) == (day(4), 95.0, "stop_loss")
    assert result.metrics["trades"] == 1  # the target stays 1: no re-entry until it changes


def test_stop_loss_gap_fills_at_the_open_and_re_entry_waits_for_a_change() -> None:
    opens = [100.0, 100.0, 100.0, 90.0, 91.0, 92.0, 93.0, 94.0]
    bars = make_bars(col(opens), col(opens), col([o + 1 for o in opens]), col([o - 0.5 for o in opens]))
    result = run(col([0, 1, 1, 1, 0, 1, 1, 1]), bars, stop_loss=0.05)
    first, second = result.trades
    assert (first.exit_time, first.exit_price, first.exit_reason) == (day(3), 90.0, "stop_loss")
    assert (second.entry_time, second.entry_price, second.exit_reason) == (day(6), 93.0, "open")


def test_take_profit_level_gap_and_the_pessimistic_bar() -> None:
    opens = [100.0, 100.0, 100.0, 105.0, 109.0]
    highs = [100.0, 100.0, 100.0, 112.0, 109.0]
    lows = [100.0, 100.0, 100.0, 104.0, 109.0]
    bars = make_bars(col(opens), col(opens), col(highs), col(lows))
    (trade,) = run(col([0, 1, 1, 1, 1]), bars, take_profit=0.1).trades
    assert (trade.exit_time, trade.exit_price, trade.exit_reason) == (day(3), 110.0, "take_profit")

    gap = make_bars(col([100.0, 100.0, 100.0, 115.0]), col([100.0, 100.0, 100.0, 115.0]))
    (trade,) = run(col([0, 1, 1, 1]), gap, take_profit=0.1).trades
    assert (trade.exit_price, trade.exit_reason) == (115.0, "take_profit")

    both = make_bars(col([100.0, 100.0, 100.0, 100.0]), None, col([100.0, 100.0, 100.0, 111.0]),
                     col([100.0, 100.0, 100.0, 94.0]))  # fmt: skip
    (trade,) = run(col([0, 1, 1, 1]), both, take_profit=0.1, stop_loss=0.05).trades
    assert (trade.exit_price, trade.exit_reason) == (95.0, "stop_loss")


def test_short_stop_loss_is_above_the_entry() -> None:
    opens = [100.0, 100.0, 100.0, 101.0]
    bars = make_bars(col(opens), col(opens), col([100.0, 100.0, 100.0, 106.0]), col(opens))
    (trade,) = run(col([0, -1, -1, -1]), bars, stop_loss=0.05).trades
    assert (trade.exit_price, trade.exit_reason) == (105.0, "stop_loss") and trade.quantity < 0


def test_fixed_and_volatility_sizing() -> None:
    bars = make_bars(col(OPENS), col(CLOSES))
    (trade,) = run(col([0, 0, 1, 1, 0, 0, 0, 0]), bars, sizing="fixed", quantity=7).trades
    assert trade.quantity == 7
    (trade,) = run(col([0, 0, 0.5, 0.5, 0, 0, 0, 0]), bars, sizing="fixed", quantity=7).trades
    assert trade.quantity == 3  # floor(7 * 0.5)
    (trade,) = run(col([0, 0, -1, -1, 0, 0, 0, 0]), bars, sizing="fixed", quantity=1000).trades
    assert trade.quantity == -int(10_000 // 104.0)  # never more than the cash allows

    closes = [100.0, 102.0, 99.0, 103.0, 101.0, 104.0, 104.0, 104.0]
    vbars = make_bars(col(closes), col(closes))
    (trade,) = run(col([0, 0, 0, 0, 1, 1, 1, 1]), vbars, sizing="volatility", vol_window=4, vol_target=0.2).trades
    returns = np.diff(closes[:5]) / np.array(closes[:4])
    vol = float(np.std(returns, ddof=1) * math.sqrt(252))
    fraction = min(1.0, 0.2 / vol)
    assert trade.quantity == int((10_000 * fraction) // 104.0)
    calm = [100.0, 100.1, 100.0, 100.1, 100.0, 100.1, 100.1, 100.1]
    (trade,) = run(col([0, 0, 0, 0, 1, 1, 1, 1]), make_bars(col(calm), col(calm)), sizing="volatility",
                   vol_window=4).trades  # fmt: skip
    assert trade.quantity == int((10_000 * ALL_IN) // 100.1)  # capped at the whole allocation


def test_shared_capital_exits_before_entries() -> None:
    # BBB (column 0) enters on the very bar AAA (column 1) exits; with one pool of 2,000 and AAA holding 1,000
    # of stock, BBB can buy 10 shares at 100 only because AAA's sale comes first.
    opens = [[100.0, 100.0]] * 6
    targets = [[0, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 0]]
    bars = make_bars(opens, symbols=("BBB", "AAA"))
    result = run(targets, bars, capital="shared", cash=1_000.0, sizing="fixed", quantity=10)
    aaa, bbb = result.trades
    assert (aaa.symbol, aaa.exit_time, aaa.quantity) == ("AAA", day(4), 10)
    assert (bbb.symbol, bbb.entry_time, bbb.quantity, bbb.exit_reason) == ("BBB", day(4), 10, "open")
    assert result.equity_by_symbol is None and result.equity[-1] == pytest.approx(1_000.0)

    # Percent sizing: each entry gets total equity / N, and an entry never spends cash that is not there.
    both = run([[0, 0], [1, 1], [1, 1], [1, 1]], make_bars([[100.0, 50.0]] * 4, symbols=("X", "Y")),
               capital="shared", cash=1_000.0, costs=True)  # fmt: skip
    x, y = both.trades
    # 500 / 100 and 500 / 50 are whole: all in (1 - epsilon) and the charges leave one share fewer
    assert x.quantity == 4 and y.quantity == 9
    assert 1_000 - (x.quantity * 100 + x.entry_charges) - (y.quantity * 50 + y.entry_charges) >= 0


def test_slippage_is_against_us() -> None:
    bars = make_bars(col(OPENS), col(CLOSES))
    (trade,) = run(col([0, 0, 1, 1, 0, 0, 0, 0]), bars, slippage_ticks=2).trades
    assert (trade.entry_price, trade.exit_price) == (104.10, 104.90)
    (trade,) = run(col([0, 0, -1, -1, 0, 0, 0, 0]), bars, slippage_ticks=2, tick_size=0.1).trades
    assert (trade.entry_price, trade.exit_price) == (103.80, 105.20)


def test_missing_bars_neither_signal_nor_fill() -> None:
    # AAA has no bar at 3: its change at 2 fills at 4's open. BBB is listed from bar 2 on.
    opens = [[100.0, NAN], [101.0, NAN], [102.0, 50.0], [NAN, 51.0], [104.0, 52.0], [105.0, 53.0]]
    targets = [[0, NAN], [0, NAN], [1, 0], [NAN, 1], [1, 1], [1, 0]]
    bars = make_bars(opens, symbols=("AAA", "BBB"))
    result = run(targets, bars)
    by = {t.symbol: t for t in result.trades}
    assert (by["AAA"].entry_time, by["AAA"].entry_price, by["AAA"].exit_reason) == (day(4), 104.0, "open")
    # BBB's change back to 0 at the last bar has no next bar to fill at: still open, marked at the last close
    assert (by["BBB"].entry_time, by["BBB"].exit_time, by["BBB"].exit_reason) == (day(4), day(5), "open")
    assert result.equity_by_symbol is not None
    assert list(result.equity_by_symbol[:2, 1]) == [10_000.0, 10_000.0]  # not listed yet: its cash
    assert result.equity_by_symbol[3, 0] == 10_000.0  # no bar, no position yet
    assert result.metrics["exposure"] == pytest.approx(4 / 9)  # AAA at 4, 5; BBB at 4, 5; of 9 bar-symbols


def test_costs_on_and_off() -> None:
    bars = make_bars(col(OPENS), col(CLOSES))
    free = run(col([0, 0, 1, 1, 0, 0, 0, 0]), bars, cash=100_000.0)
    paid = run(col([0, 0, 1, 1, 0, 0, 0, 0]), bars, cash=100_000.0, costs=True)
    (t_free,), (t_paid,) = free.trades, paid.trades
    assert t_free.charges == 0 and free.metrics["charges"] == 0
    assert t_paid.charges > 0 and t_paid.quantity < t_free.quantity  # the charges come out of the all-in size
    assert paid.metrics["charges"] == pytest.approx(t_paid.charges)
    assert t_paid.pnl == pytest.approx(t_paid.quantity * 1.0 - t_paid.charges)
    assert paid.equity[-1] == pytest.approx(100_000 + t_paid.pnl)


def test_open_at_the_end_is_marked_at_the_last_close() -> None:
    bars = make_bars(col(OPENS), col(CLOSES))
    result = run(col([0, 0, 1, 1, 1, 1, 1, 1]), bars, costs=True, cash=100_000.0)
    (trade,) = result.trades
    assert (trade.exit_reason, trade.exit_time, trade.exit_price) == ("open", day(7), 107.5)
    assert trade.exit_charges == 0 and trade.charges == trade.entry_charges > 0
    assert result.equity[-1] == pytest.approx(100_000 + trade.quantity * (107.5 - 104.0) - trade.entry_charges)
    assert result.metrics["trades"] == 1 and result.metrics["win_rate"] == 0  # no closed trade to win
    assert [*result.trades_json()[0]] == ["symbol", "entry_time", "exit_time", "quantity", "entry_price",
                                          "exit_price", "pnl", "charges", "exit_reason"]  # fmt: skip
    assert result.trades_json()[0]["exit_time"] == "2024-01-08T00:00:00+05:30"


def test_metrics_against_hand_formulas() -> None:
    equity = np.array([100.0, 110.0, 99.0, 120.0, 108.0])
    # stats: traded 500.00, charges 3.00, exposed 6 of 10 bar-symbols, 3 closed (2 won 30.00, lost 10.00), 1 open
    stats = np.array([50_000, 300, 6, 10, 3, 2, 3_000, 1_000, 1], dtype=np.int64)
    years = 2.0
    m = compute_metrics(equity, initial=100.0, periods=252.0, years=years, stats=stats)
    r = np.array([0.10, -0.10, 120 / 99 - 1, 108 / 120 - 1])
    assert m["final_equity"] == 108.0 and m["total_return"] == pytest.approx(0.08)
    assert m["cagr"] == pytest.approx(1.08**0.5 - 1)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    downside = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    assert m["sortino"] == pytest.approx(r.mean() / downside * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(0.10)  # 110 -> 99
    assert m["win_rate"] == pytest.approx(2 / 3) and m["profit_factor"] == pytest.approx(3.0)
    assert m["exposure"] == pytest.approx(0.6)
    assert m["turnover"] == pytest.approx(500.0 / equity.mean() / years)
    assert m["charges"] == 3.0 and m["trades"] == 4.0
    flat = compute_metrics(np.full(4, 100.0), initial=100.0, periods=252.0, years=1.0, stats=np.zeros(9, np.int64))
    assert flat["sharpe"] == 0 and flat["sortino"] == 0 and flat["profit_factor"] == 0 and flat["max_drawdown"] == 0
    assert periods_per_year("minute") == 252 * 375 and periods_per_year("5minute") == 252 * 75
    with pytest.raises(ValueError, match="interval"):
        periods_per_year("week")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"cash": -5}, "cash"),
        ({"cash": True}, "cash"),
        ({"cash": "lots"}, "cash"),
        ({"fill": "vwap"}, "fill"),
        ({"capital": "pooled"}, "capital"),
        ({"percent": 150}, "percent"),
        ({"quantity": 1.5}, "quantity"),
        ({"stop_loss": 1.5}, "stop_loss"),
        ({"costs": "yes"}, "costs"),
        ({"tick_size": 0.001}, "tick_size"),
        ({"slipage_ticks": 1}, "slipage_ticks"),
    ],
)
def test_settings_errors_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingsError) as bad:
        Settings.from_dict(raw)
    assert bad.value.field == field and str(bad.value).startswith(f"{field}: ")


def test_settings_round_trip() -> None:
    assert Settings.from_dict(None) == Settings()
    s = Settings.from_dict({"cash": "250000", "fill": "close", "stop_loss": 0.02, "quantity": 5.0, "take_profit": None})
    assert (s.cash, s.fill, s.stop_loss, s.quantity, s.take_profit) == (250_000.0, "close", 0.02, 5, None)
    assert Settings.from_dict(s.as_dict()) == s
    with pytest.raises(SettingsError, match="settings"):
        Settings.from_dict([1, 2])  # type: ignore[arg-type]


def test_bad_targets_and_dates() -> None:
    bars = make_bars(col(OPENS))
    with pytest.raises(ValueError, match="targets are shaped"):
        run([[0, 1]], bars)
    old = Bars("day", bars.times - np.timedelta64(5000, "D"), bars.symbols, bars.open, bars.high, bars.low,
               bars.close, bars.volume)  # fmt: skip
    with pytest.raises(ValueError, match="before the charge schedule"):
        run(col([0] * 8), old, costs=True)
    assert run(col([0] * 8), old).metrics["trades"] == 0


def test_run_grid_equals_run_backtest(daily_bars: Bars) -> None:
    bars = daily_bars.select(daily_bars.symbols[:12])
    sets = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 30}, {"fast": 20, "slow": 50, "long_short": True}]
    seen: list[tuple[int, int]] = []
    for settings in (Settings(), Settings(capital="shared", fill="close", stop_loss=0.08, slippage_ticks=1)):
        grid = run_grid("sma_crossover", sets, bars, settings, progress=lambda d, t: seen.append((d, t)))
        for params, metrics in zip(sets, grid, strict=True):
            single = run_backtest(get_strategy("sma_crossover", params), bars, settings)
            assert metrics == single.metrics
            assert single.metrics["trades"] == len(single.trades) > 0
    assert seen[-1] == (3, 3)


def test_progress_and_dates_of_trades(daily_bars: Bars) -> None:
    calls: list[tuple[int, int]] = []
    result = run_backtest(get_strategy("sma_crossover"), daily_bars.select(["INFY", "TCS"]), Settings(),
                          progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls[0] == (0, 2) and calls[-1] == (2, 2)
    assert all(t.entry_time.tzinfo is not None and t.entry_time.date() >= date(2020, 10, 1) for t in result.trades)
